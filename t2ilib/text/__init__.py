"""Text side: tokenizer and vocabulary (``vocab``), the DAMSM bi-LSTM text encoder (``encoder``)."""
