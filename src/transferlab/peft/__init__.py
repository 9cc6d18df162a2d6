"""Parameter-efficient fine-tuning: which of the backbone's parameters train (``base.py``), one
member per file, one YAML each in ``conf/method/peft/``."""
