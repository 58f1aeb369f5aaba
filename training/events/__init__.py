"""The loop back from serving to training: export the event stream, read it as training input."""
