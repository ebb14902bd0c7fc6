"""retrieval-lab's single entry point: `python run.py [group=option ...] [key=value ...]` (`-m` to sweep)."""

import logging

import hydra
from omegaconf import DictConfig

from retrieval_lab.config import ConfigError, register, stop_with, validate_config

register()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    # data warnings (unknown documents kept, graded qrels at threshold 1, blank queries) go through logging: to the
    # console and to the run's log file, one line each
    logging.captureWarnings(True)
    import warnings

    warnings.formatwarning = _one_line_warning
    from retrieval_lab.hub import BackboneError, check_stage_models

    try:
        validate_config(cfg)  # unknown keys (a `+key=...` Hydra let through), impossible values, resume_from
        # a model no stage can load (offline, not a folder) stops the run before any import of torch or any stage
        check_stage_models(cfg)
    except (ConfigError, BackboneError) as error:
        stop_with(error)

    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import OmegaConfBaseException

    from retrieval_lab.data.errors import CollectionError
    from retrieval_lab.pipeline import run_pipeline  # imported late: --help and --cfg stay fast

    try:
        return run_pipeline(cfg)
    # bad data, a model that cannot be loaded, a setting the data or the machine cannot satisfy (faiss on a GPU that
    # is not there, an unwritable cache_dir, Lightning refusing the hardware): our errors say what to do
    except (CollectionError, ConfigError, BackboneError, ValueError, KeyError, OSError, RuntimeError,
            FloatingPointError, MisconfigurationException, OmegaConfBaseException) as error:
        stop_with(error)


if __name__ == "__main__":
    main()
