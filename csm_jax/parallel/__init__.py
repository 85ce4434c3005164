"""Meshes, logical-axis sharding rules, topologies, multi-process start-up and hardware peaks."""
