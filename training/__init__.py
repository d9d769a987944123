"""Offline training and evaluation: data readers, trainer, seqeval scoring. Imports ``model``."""
