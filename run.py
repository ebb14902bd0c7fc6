"""retrieval-lab's single entry point: `python run.py [group=option ...] [key=value ...]` (`-m` to sweep)."""

import hydra
from omegaconf import DictConfig

from retrieval_lab.config import register

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from retrieval_lab.pipeline import run_pipeline  # imported late: --help and --cfg stay fast

    return run_pipeline(cfg)


if __name__ == "__main__":
    main()
