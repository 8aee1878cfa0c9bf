"""Model shapes ``lda-monitor bench --config-preset`` builds with random weights (no torch import
here, so the command line can list them before any heavy import).

Llama 3.2 1B / 3B and Llama 3.1 8B, from their ``config.json``; all have a 128,256-token
vocabulary, grouped-query attention with 8 key/value heads and RoPE theta 500,000.
"""

from __future__ import annotations

PRESETS = {
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "llama-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}
VOCAB_SIZE = 128256
