"""Rasa inside Omnihub: a Rasa server as the NLU or the whole dialogue backend, reached over HTTP
(its own environment: `scripts/rasa-env`), and Omnihub as Rasa's action server (`POST /rasa/webhook`)."""
