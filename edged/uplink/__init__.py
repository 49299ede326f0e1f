"""Uplinks to the cloud: MQTT and CoAP/DTLS."""
