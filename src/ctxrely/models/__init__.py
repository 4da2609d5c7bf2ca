"""Model loading (:mod:`.load`), the packaged-model zoo (:mod:`.zoo`), GGUF conversion (:mod:`.gguf`)
and tiny random models for tests (:mod:`.tiny`)."""
