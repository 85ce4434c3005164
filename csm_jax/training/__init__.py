"""The one trainer, its state and step, the tasks it trains, the run step that prepares them, and ahead-of-time plans."""
