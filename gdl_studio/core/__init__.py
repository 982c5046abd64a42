"""The core: plugin contract, discovery, runtime, jobs, results and history. No Qt here."""
