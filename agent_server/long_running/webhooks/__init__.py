"""Signed webhooks when a background response ends: settings, signing, delivery."""
