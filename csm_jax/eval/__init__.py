"""Evaluation of trained models: instruments, metrics, reports, experiments and the listening test."""
