"""The verified read-only model cache behind `mstore.model_path`: its entries, and upkeep (plan, then execute)."""
