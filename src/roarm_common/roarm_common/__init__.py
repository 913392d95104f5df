"""Node plumbing shared by every roarm-vla node."""
