"""Claims workflow: intake, analysis jobs, policy, review, decisions."""
