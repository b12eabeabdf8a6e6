"""The options of an annotation job, and their checks."""

from dataclasses import dataclass, field
from typing import List, Optional

from ..errors import UserError
from .inputs import InputOptions

ENGINES = ("local", "ray")
OUTPUT_FORMATS = ("jsonl", "docbin")


@dataclass(frozen=True)
class Settings:
    """What shapes the output; a rerun must use the same.

    shard_size (int): Documents per shard.
    threshold (Optional[float]): The least score kept (None keeps all).
    output_format (str): "jsonl" or "docbin".
    """

    shard_size: int = 10000
    threshold: Optional[float] = None
    output_format: str = "jsonl"

    @property
    def with_doc(self) -> bool:
        """RETURNS (bool): Whether the workers send back Doc bytes (DocBin output)."""
        return self.output_format == "docbin"


@dataclass(frozen=True)
class AnnotateOptions:
    """Everything `annotate` takes besides the model, the inputs, the output folder and
    the progress callback, for `run_annotation`: each field is the keyword argument of
    `annotate` of the same name, with the same default (documented there).
    """

    engine: str = "local"
    input_options: InputOptions = field(default_factory=InputOptions)
    settings: Settings = field(default_factory=Settings)
    component: Optional[str] = None
    n_process: int = 1
    batch_size: int = 256
    gpu_id: int = -1
    n_workers: int = 1
    ray_address: Optional[str] = None
    ray_num_cpus: Optional[int] = None
    overwrite: bool = False

    def check(self) -> None:
        """Refuse options that cannot go together, naming every problem at once (the
        input options are checked where the inputs are listed)."""
        problems = []
        settings = self.settings
        if self.engine not in ENGINES:
            problems.append(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if settings.output_format not in OUTPUT_FORMATS:
            problems.append(
                f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, "
                f"not {settings.output_format!r}"
            )
        if settings.shard_size < 1:
            problems.append(f"--shard-size must be at least 1, not {settings.shard_size}")
        if settings.threshold is not None and not 0.0 <= settings.threshold <= 1.0:
            problems.append(f"--threshold must be between 0 and 1, not {settings.threshold}")
        problems += self._count_problems()
        if self.engine == "local" and self.n_workers != 1:
            problems.append("--n-workers is for --engine ray; on one machine use --n-process")
        if self.engine == "ray" and self.n_process != 1:
            problems.append("--n-process is for --engine local; on Ray use --n-workers")
        if self.gpu_id >= 0 and self.n_process > 1:
            problems.append(
                "--gpu-id runs one process: each worker process would hold its own copy of "
                "the model on the GPU (use --batch-size to fill the GPU)"
            )
        if problems:
            raise UserError("; ".join(problems))

    def _count_problems(self) -> List[str]:
        """RETURNS (List[str]): The counts and device numbers out of their range."""
        problems = []
        if self.batch_size < 1:
            problems.append(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.n_process < 1 or self.n_workers < 1:
            problems.append("--n-process and --n-workers must be at least 1")
        if self.ray_num_cpus is not None and self.ray_num_cpus < 1:
            # Ray starts with no CPU to schedule on and waits forever.
            problems.append(f"--ray-num-cpus must be at least 1, not {self.ray_num_cpus}")
        if self.gpu_id < -1:
            problems.append(f"--gpu-id must be -1 (the CPU) or a GPU's number, not {self.gpu_id}")
        return problems
