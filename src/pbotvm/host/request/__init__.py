"""What a request goes through on the host: options, edits, the C family and Java rewriting,
the vm-exec pipeline, the finishing of the answer, the paste."""
