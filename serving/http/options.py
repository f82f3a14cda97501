"""The options of ``ast-serve http`` (one dataclass; the CLI flags map onto its fields one to one)."""

from __future__ import annotations

from dataclasses import dataclass

API_KEY_ENV = "AST_SAMPLEID_API_KEY"
MB = 1 << 20


@dataclass
class HttpOptions:
    """How the service listens, batches and limits work.

    Attributes:
        host: interface to bind; loopback by default, so nothing is exposed unless asked for.
        port: TCP port (0 picks a free one).
        max_batch: most windows in one ONNX Runtime run, drawn from as many requests as are waiting.
        max_delay_ms: longest a window waits for others to fill its batch.
        max_queue: most requests admitted at once (receiving, decoding or waiting for inference); more get 503.
        max_body_mb: largest request body, checked while it streams in.
        max_audio_s: longest song, checked from the header before decoding (and again while decoding).
        timeout_s: the request deadline: the body must arrive (else 408) and the answer be ready (else 504)
            within this many seconds of the request's start.
        hop_s: seconds between windows; None uses the model's hop (as ``identify`` does).
        decode_threads: threads that decode uploads off the event loop.
        api_key: when set, every endpoint but the health checks and the page needs ``Authorization: Bearer``.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    max_batch: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 64
    max_body_mb: float = 64.0
    max_audio_s: float = 600.0
    timeout_s: float = 60.0
    hop_s: float | None = None
    decode_threads: int = 2
    api_key: str | None = None

    @property
    def max_body_bytes(self) -> int:
        """``max_body_mb`` in bytes."""
        return int(self.max_body_mb * MB)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first option out of range."""
        positive = {"max_batch": self.max_batch, "max_queue": self.max_queue, "max_body_mb": self.max_body_mb,
                    "max_audio_s": self.max_audio_s, "timeout_s": self.timeout_s,
                    "decode_threads": self.decode_threads}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.max_delay_ms < 0:
            raise ValueError(f"--max-delay-ms must be >= 0, got {self.max_delay_ms}")
        if self.hop_s is not None and not self.hop_s > 0:
            raise ValueError(f"--hop must be > 0 seconds, got {self.hop_s}")
