"""lm-evaluation-harness export (:mod:`.export`) and the helper module copied into exported tasks (:mod:`.helper`)."""
