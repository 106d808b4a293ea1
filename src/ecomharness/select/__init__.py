"""Data selection for CPT (Efficient-CPT's ETS-DACP / ETA-DACP) and curriculum ordering."""
