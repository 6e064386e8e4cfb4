"""The branch catalog: every quantization branch of a Hub repo and what each one needs."""
