"""Encoder-decoder RNNs, with and without additive attention (chapter 1).

A toy task (copy, or reverse, a string of random digits); a GRU encoder; a
decoder that starts from the encoder's last hidden state and nothing else; and
a decoder that looks back at every encoder state through the additive
attention of Bahdanau et al. (2014). :mod:`attention.rnn_training` trains both
at growing lengths and measures what they learned.

Shape letters in this module: ``B`` batch, ``S`` source tokens, ``T`` output
tokens, ``E`` embedding width, ``N`` hidden width, ``A`` width inside the
attention score, ``V`` vocabulary size (:data:`VOCAB_SIZE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attention import _checks

#: Tokens 0 to 9 are the digits; the decoder's first input is this start token.
BOS = 10
#: The ten digits and the start token.
VOCAB_SIZE = 11

Task = Literal["copy", "reverse"]


def digit_batch(
    batch_size: int, length: int, *, generator: torch.Generator, task: Task = "copy"
) -> tuple[Tensor, Tensor]:
    """A batch of random digit strings and the strings the model must write.

    ``target[b, i] = source[b, i]`` for ``"copy"``; ``source[b, S - 1 - i]`` for ``"reverse"``.

    Args:
        batch_size: B, the number of strings.
        length: S, the number of digits in each string.
        generator: Where the digits are drawn from (the global random state is
            left alone); they are made on its device.
        task: ``"copy"`` or ``"reverse"``. Default: ``"copy"``.

    Returns:
        ``(source, target)``, both int64 of shape (B, S), digits 0 to 9.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> source, target = digit_batch(2, 5, generator=g, task="reverse")
        >>> torch.equal(target, source.flip(1))  # exact: integer digits
        True
    """
    b = _checks.positive_int("batch_size", batch_size)
    s = _checks.positive_int("length", length)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if task not in ("copy", "reverse"):
        raise ValueError(f"task must be 'copy' or 'reverse', got {task!r}")
    source = torch.randint(0, 10, (b, s), generator=generator, device=generator.device)  # (B, S)
    return source, source.flip(1) if task == "reverse" else source.clone()


def _digits(name: str, tokens: object, *, batch: int | None = None) -> Tensor:
    """Return ``tokens`` if it is a non-empty (B, S) int64 tensor of digits, else raise."""
    t = _checks.tensor(name, tokens)
    if t.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 tensor of digits, got dtype {t.dtype}")
    if t.dim() != 2 or t.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty int64 tensor of shape (B, S), "
            f"got dtype {t.dtype} and shape {tuple(t.shape)}"
        )
    if batch is not None and t.shape[0] != batch:
        raise ValueError(f"{name} must have batch size B={batch}, got {t.shape[0]}")
    if t.min() < 0 or t.max() > 9:
        raise ValueError(f"{name} must hold digits 0 to 9, got values {t.min()} to {t.max()}")
    return t


class AdditiveAttention(nn.Module):
    """Bahdanau's additive attention: score every encoder state against one query.

    ``e_j = v^T tanh(W_s s + W_h h_j)``, ``a = softmax(e)`` over the source
    positions j, and the context is ``c = sum_j a_j h_j``.

    Args:
        query_size: Width of the query s (the decoder's hidden state).
        key_size: Width of each encoder state h_j.
        attention_size: A, the width of the hidden layer inside the score.

    Example:
        >>> attend = AdditiveAttention(4, 6, 8)
        >>> context, weights = attend(torch.rand(2, 4), torch.rand(2, 5, 6))
        >>> tuple(context.shape), tuple(weights.shape)
        ((2, 6), (2, 5))
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        a = _checks.positive_int("attention_size", attention_size)
        self.W_s = nn.Linear(_checks.positive_int("query_size", query_size), a)
        self.W_h = nn.Linear(_checks.positive_int("key_size", key_size), a, bias=False)
        self.v = nn.Linear(a, 1, bias=False)

    def forward(
        self, query: Tensor, keys: Tensor, projected_keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Weigh the encoder states ``keys`` by how well each matches ``query``.

        Args:
            query: The decoder's state s, shape (B, query_size).
            keys: The encoder's states h_1 .. h_S, shape (B, S, key_size).
            projected_keys: ``W_h(keys)``, (B, S, A), if already computed (it
                stays the same while one string is decoded). Default: ``None``.

        Returns:
            ``(context, weights)``: context (B, key_size) and weights (B, S),
            non-negative, each row summing to one.
        """
        q, k = _additive_inputs(self, query, keys, projected_keys)
        if projected_keys is None:
            projected_keys = self.W_h(k)  # (B, S, key_size) -> (B, S, A)
        hidden = torch.tanh(self.W_s(q)[:, None, :] + projected_keys)  # (B, 1, A) + (B, S, A)
        scores = self.v(hidden).squeeze(-1)  # (B, S, A) -> (B, S, 1) -> (B, S)
        weights = torch.softmax(scores, dim=-1)  # (B, S), over the source positions
        context = (weights[:, None, :] @ k).squeeze(1)  # (B, 1, S) @ (B, S, N) -> (B, N)
        return context, weights


def _additive_inputs(
    layer: AdditiveAttention, query: object, keys: object, projected_keys: object
) -> tuple[Tensor, Tensor]:
    """The argument checks of :meth:`AdditiveAttention.forward`; return query and keys."""
    q = _checks.floating("query", query, ranks=(2,), layout="(B, query_size)")
    k = _checks.floating("keys", keys, ranks=(3,), layout="(B, S, key_size)")
    _checks.last_dim("query", q, layer.W_s.in_features, "query_size")
    _checks.last_dim("keys", k, layer.W_h.in_features, "key_size")
    _checks.matches_parameters("query", q, layer.W_s.weight)
    _checks.matches_parameters("keys", k, layer.W_h.weight)
    _checks.same_size("keys", k, 0, "query", q.shape[0], "batch size B")
    if k.shape[1] == 0:
        raise ValueError(f"keys must hold at least one state (S >= 1), got shape {tuple(k.shape)}")
    if projected_keys is not None:
        p = _checks.floating("projected_keys", projected_keys, ranks=(3,), layout="(B, S, A)")
        expected = (*k.shape[:2], layer.W_h.out_features)
        if tuple(p.shape) != expected:
            raise ValueError(
                f"projected_keys must have shape (B, S, A) = {expected}, the shape of "
                f"W_h(keys), got {tuple(p.shape)}"
            )
        _checks.matches_parameters("projected_keys", p, layer.W_h.weight)
    return q, k


class Encoder(nn.Module):
    """Read the source with a GRU: one hidden state per token; the last one sums up.

    ``h_j = GRU(embed(x_j), h_{j-1})`` for j = 1 .. S, from ``h_0 = 0``.

    Args:
        embed_size: E, the width of the token embeddings.
        hidden_size: N, the width of the hidden state.
    """

    def __init__(self, embed_size: int, hidden_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, embed_size)
        self.gru = nn.GRU(embed_size, hidden_size, batch_first=True)

    def forward(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens (B, S) to every hidden state (B, S, N) and the last one (B, N)."""
        states, last = self.gru(self.embedding(source))  # (B, S, E) -> (B, S, N), (1, B, N)
        return states, last[0]


class Decoder(nn.Module):
    """Write the output from the encoder's last state alone: the bottleneck.

    ``s_i = GRU(embed(y_{i-1}), s_{i-1})`` and ``logits_i = W_out s_i``, where
    ``s_0`` is the encoder's last hidden state.

    Args:
        embed_size: E, the width of the token embeddings.
        hidden_size: N, the width of the hidden state.
    """

    def __init__(self, embed_size: int, hidden_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, embed_size)
        self.gru = nn.GRU(embed_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, VOCAB_SIZE)

    def forward(
        self, tokens: Tensor, state: Tensor, states: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Previous tokens (B, T) and state (B, N) to logits (B, T, V) and the last state.

        The encoder's ``states`` (B, S, N) go unused: this decoder never looks
        back, so it has no attention weights to return (``None``).
        """
        outputs, last = self.gru(self.embedding(tokens), state[None])  # (B, T, N), (1, B, N)
        return self.out(outputs), last[0], None  # (B, T, V), (B, N)


class AttentionDecoder(nn.Module):
    """A :class:`Decoder` that looks back at every encoder state at every step.

    ``c_i = attention(s_{i-1}, h_1 .. h_S)``,
    ``s_i = GRU([embed(y_{i-1}); c_i], s_{i-1})``, ``logits_i = W_out [s_i; c_i]``.

    Args:
        embed_size: E, the width of the token embeddings.
        hidden_size: N, the width of the hidden state (and of the encoder's).
        attention_size: A, the width inside the attention score.
    """

    def __init__(self, embed_size: int, hidden_size: int, attention_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, embed_size)
        self.attention = AdditiveAttention(hidden_size, hidden_size, attention_size)  # new
        self.cell = nn.GRUCell(embed_size + hidden_size, hidden_size)  # new: reads c_i too
        self.out = nn.Linear(2 * hidden_size, VOCAB_SIZE)  # new: sees c_i too

    def forward(
        self, tokens: Tensor, state: Tensor, states: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Previous tokens (B, T), state (B, N), encoder states (B, S, N) to logits (B, T, V).

        Step i attends with s_{i-1}, so the steps must run one after another.
        Also returns the last state (B, N) and the weights (B, T, S).
        """
        projected = self.attention.W_h(states)  # (B, S, N) -> (B, S, A), once per string
        logits, weights = [], []
        for token in self.embedding(tokens).unbind(dim=1):  # T x (B, E)
            context, w = self.attention(state, states, projected)  # (B, N), (B, S)
            state = self.cell(torch.cat([token, context], dim=-1), state)  # (B, E + N) -> (B, N)
            logits.append(self.out(torch.cat([state, context], dim=-1)))  # (B, 2N) -> (B, V)
            weights.append(w)
        return torch.stack(logits, dim=1), state, torch.stack(weights, dim=1)  # (B, T, V|S)


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The sizes of a :class:`Seq2Seq` model, and whether it attends."""

    attention: bool = True  # decode with AttentionDecoder (True) or Decoder (False)
    embed_size: int = 16  # E, token embedding width
    hidden_size: int = 64  # N, GRU hidden width, encoder and decoder
    attention_size: int = 32  # A, width inside the additive score


class Seq2Seq(nn.Module):
    """An :class:`Encoder` followed by a :class:`Decoder` or an :class:`AttentionDecoder`.

    ``h_1 .. h_S = encoder(x)``; ``logits_i = decoder(y_{i-1}, s_{i-1}, h_1 .. h_S)``.

    Args:
        config: The sizes, and whether the decoder attends.

    Example:
        >>> model = Seq2Seq(Seq2SeqConfig(hidden_size=8))
        >>> logits, weights = model(torch.randint(0, 10, (2, 5)))
        >>> tuple(logits.shape), tuple(weights.shape)
        ((2, 5, 11), (2, 5, 5))
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
        e = _checks.positive_int("embed_size", config.embed_size)
        n = _checks.positive_int("hidden_size", config.hidden_size)
        a = _checks.positive_int("attention_size", config.attention_size)
        _checks.flag("attention", config.attention)
        self.config = config
        self.encoder = Encoder(e, n)
        self.decoder = AttentionDecoder(e, n, a) if config.attention else Decoder(e, n)

    def forward(self, source: Tensor, target: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Encode ``source``, then write the output one digit after another.

        Args:
            source: Digits, int64 of shape (B, S).
            target: The correct output (B, T), for training: each step is fed
                the true previous digit ("teacher forcing"). Default: ``None``,
                greedy decoding of T = S digits, each step fed the model's own
                previous answer.

        Returns:
            ``(logits, weights)``: logits (B, T, V); attention weights
            (B, T, S), or ``None`` for a model without attention.
        """
        src = _digits("source", source)
        states, state = self.encoder(src)  # (B, S, N), (B, N)
        start = src.new_full((src.shape[0], 1), BOS)  # (B, 1)
        if target is not None:
            tgt = _digits("target", target, batch=src.shape[0])
            inputs = torch.cat([start, tgt[:, :-1]], dim=1)  # (B, T): BOS, y_1 .. y_{T-1}
            logits, _, weights = self.decoder(inputs, state, states)  # (B, T, V), (B, T, S)
            return logits, weights
        token, steps = start, []
        for _ in range(src.shape[1]):
            logits, state, weights = self.decoder(token, state, states)  # (B, 1, V), (B, 1, S)
            token = logits.argmax(dim=-1)  # (B, 1)
            steps.append((logits, weights))
        logits = torch.cat([lg for lg, _ in steps], dim=1)  # T x (B, 1, V) -> (B, T, V)
        weights = None if steps[0][1] is None else torch.cat([w for _, w in steps], dim=1)
        return logits, weights  # (B, T, V), (B, T, S) or None
