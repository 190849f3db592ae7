"""The example "courses" producer of the compose file (``python -m producer``).

Publishing itself is the library's: ``pgsubscriber.publish`` / ``publish_many``.
"""
