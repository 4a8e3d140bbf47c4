"""Small PDFs for tests, written byte by byte (no PDF library on the writing side).

Each page's text is drawn by one content stream, deflated (so the secret is
not in the file's bytes as such) and, with ``split``, cut into the pieces of
a ``TJ`` array with kerning between them, as typesetting programs write it.
"""

from __future__ import annotations

import zlib


def _literal(text: str) -> bytes:
    return b"(" + text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def make_pdf(pages: list[str], *, split: int = 0, compress: bool = True, repeat: int = 1) -> bytes:
    """A PDF with one line of Helvetica text per page (``split``: pieces of that many characters;
    ``repeat``: the line drawn that many times over, one text operator each)."""
    objects: list[bytes] = []
    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, text in enumerate(pages):
        if split:
            parts = [text[k : k + split] for k in range(0, len(text), split)]
            shown = b"[" + b" -20 ".join(_literal(p) for p in parts) + b"] TJ"
        else:
            shown = _literal(text) + b" Tj"
        stream = b"BT /F1 12 Tf 72 712 Td " + b" ".join([shown] * repeat) + b" ET"
        data = zlib.compress(stream) if compress else stream
        flt = b" /Filter /FlateDecode" if compress else b""
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            f" /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length " + str(len(data)).encode() + flt + b" >>\nstream\n" + data + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for k, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{k} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
