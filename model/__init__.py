"""The tagger itself: tag schemes, vocabularies, CRF, network, artifacts and a predictor.

This package is the bottom layer: it imports neither ``training`` nor ``service``.
"""
