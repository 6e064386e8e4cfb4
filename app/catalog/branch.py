"""What the catalog knows about one branch: static facts fetched from the Hub, cached by commit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from app.catalog.architecture import Architecture
from app.catalog.quantization import QuantizationParams

# Files that hold model weights; everything else in a branch is config, tokenizer or docs.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class FileEntry:
    """One file of a branch as the Hub's tree lists it."""

    path: str
    size: int
    sha256: str | None = None  # LFS files only; small files are verified by size

    @property
    def is_weight(self) -> bool:
        """Whether this file holds model weights."""
        return self.path.lower().endswith(WEIGHT_SUFFIXES)


@dataclass(frozen=True)
class TemplateInfo:
    """The prompt template a branch declares, and where it came from."""

    name: str | None  # canonical template name, "jinja" for the model's own chat_template, None if unknown
    source: str  # "chat_template.jinja", "tokenizer_config.json", "model card" or "none"
    text: str | None = None


@dataclass(frozen=True)
class BranchInfo:
    """Facts about one branch that depend only on its commit (so they can be cached by it)."""

    repo_id: str
    branch: str
    commit: str
    is_gptq: bool
    not_gptq_reason: str = ""
    quantization: QuantizationParams = field(default_factory=QuantizationParams)
    dataset: str | None = None
    seq_len: int | None = None
    description: str = ""
    card_exllama: bool | None = None
    files: tuple[FileEntry, ...] = ()
    architecture: Architecture | None = None
    template: TemplateInfo = field(default_factory=lambda: TemplateInfo(None, "none"))
    warnings: tuple[str, ...] = ()
    error: str = ""  # set when this branch could not be read; the rest of the repo still lists

    @property
    def size_bytes(self) -> int:
        """Exact size of the branch's files, as the tree lists them."""
        return sum(f.size for f in self.files)

    @property
    def weight_files(self) -> tuple[FileEntry, ...]:
        """The files that hold weights."""
        return tuple(f for f in self.files if f.is_weight)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the weight files."""
        return sum(f.size for f in self.weight_files)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used by the on-disk cache)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BranchInfo:
        """Rebuild from :meth:`to_dict` output; raises KeyError/TypeError on a foreign layout."""
        arch = data.get("architecture")
        return cls(
            **{
                **data,
                "quantization": QuantizationParams(**data["quantization"]),
                "files": tuple(FileEntry(**f) for f in data["files"]),
                "architecture": Architecture(**{**arch, "architectures": tuple(arch["architectures"])})
                if arch
                else None,
                "template": TemplateInfo(**data["template"]),
                "warnings": tuple(data["warnings"]),
            }
        )
