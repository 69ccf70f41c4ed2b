"""The section of benchmark-annotate (scripts/benchmark_annotate.py): every engine's
documents, words, entities, seconds and words/s on each input, the ratios against the
issue's targets (met or not), the machine and command, and what N machines would give
on paper, from the measured figures."""
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .markdown import NA, fmt_int, fmt_x, table

ENGINE_LABELS = {
    "pipe1": "`nlp.pipe`, 1 process",
    "pipe2": "`nlp.pipe`, 2 processes",
    "local1": "annotate, local, 1 process",
    "local2": "annotate, local, 2 processes",
    "ray1": "annotate, Ray, 1 worker",
    "ray2": "annotate, Ray, 2 workers",
}
SCALING = [
    ("pipe2_over_pipe1", "`nlp.pipe`, 2 processes / 1"),
    ("local2_over_local1", "annotate local, 2 processes / 1"),
    ("ray2_over_ray1", "annotate on Ray, 2 workers / 1"),
]

N_MACHINES = """\
**On N machines, on paper.** What scales: documents are independent, so the annotation itself splits \
across actors that never talk to each other. Ray Data reads the input with one read task per file (a \
directory of many files spreads its reading over the cluster; one large file is read by one task) and \
cuts the input into blocks of one whole `nlp.pipe` batch each, so an actor that finishes early takes the \
next batch; each actor loads the pipeline once and keeps it for every batch it gets. On this machine 2 workers gave {ray_scaling} the words/s of one on {big}. \
What does not scale: (1) start-up is a fixed cost per actor (a new process, torch and spaCy imported, the \
pipeline loaded: {load} s for this pipeline in the driver), paid in parallel but never shortened by more \
machines; {fits} \
(2) There is one driver: it starts Ray ({ray_start} s here), lists the input files and plans the reads, \
then receives every output row in input order and writes all the shards itself, so a cluster's words/s \
can never exceed what one process decodes and writes (this run does not measure that ceiling). \
(3) Small inputs: a file is the unit of reading and a batch the unit of work, so an input of few \
batches per actor leaves actors idle at the end, and a short job is mostly the fixed cost. {projection}"""


def annotate_section(report: Mapping[str, Any]) -> str:
    inputs = report["inputs"]
    targets = report["targets"]
    rows: List[List[str]] = []
    for item in inputs:
        for run in item["runs"]:
            rows.append([item["name"], ENGINE_LABELS.get(run["engine"], run["engine"]), fmt_int(run["documents"]),
                         fmt_int(run["words"]), fmt_int(run["entities"]), f"{run['seconds']:.2f}",
                         fmt_int(run["words_per_second"]), f"{run['load_before'][0]:.2f}"])  # fmt: skip
    header = ["input", "engine", "documents", "words", "entities", "seconds", "words/s", "1-min load before"]
    machine = report["machine"]
    return "\n".join([
        table(header, rows, "llrrrrrr"),
        "",
        f"Words/s here: {report['speed_definition']}.",
        "",
        *ratio_lines(inputs, targets),
        agreement_line(inputs),
        "",
        f"Model: `{report['model']}`. Input: `{report['corpus']}` ({fmt_int(inputs[0]['documents'])} documents, "
        f"as JSONL texts) and {report['repeat']} copies of it; batch size {report['batch_size']}, shard size "
        f"{fmt_int(report['shard_size'])}; torch threads per process: {report['torch_threads']}. Machine: {machine['platform']}, "
        f"{machine['cpu_count']} CPUs ({machine['cpus_usable']} usable), Python {machine['python']}, torch "
        f"{machine['torch']}, spaCy {machine['spacy']}; 1-minute load average {machine['load_average'][0]:.2f} at "
        f"the start, {report['load_average_end'][0]:.2f} at the end. Date: {report['date']}. "
        f"Command: `{report['command']}`.",
        "",
        n_machines(report),
    ])  # fmt: skip


def target_line(label: str, inputs: Sequence[Mapping[str, Any]], values: Sequence[Optional[float]],
                fmt: Callable[[float], str], ok: Callable[[float], bool]) -> str:  # fmt: skip
    """``- label: input value (met), input value (not met).``"""
    parts = [f"{item['name']} " + (f"{NA} (not measured)" if v is None else f"{fmt(v)} ({'met' if ok(v) else 'not met'})")
             for item, v in zip(inputs, values)]  # fmt: skip
    return f"- {label}: {', '.join(parts)}."


def ratio_lines(inputs: Sequence[Mapping[str, Any]], targets: Mapping[str, float]) -> List[str]:
    """The overhead of annotate over nlp.pipe, and 2 processes or workers over 1, against the targets."""
    most, least = targets["max_overhead"], targets["min_two_over_one"]
    lines = [target_line(f"Overhead of annotate over `nlp.pipe` (1 − annotate local 1-process words/s ÷ `nlp.pipe` "
                         f"1-process words/s; target ≤ {most:.0%})", inputs, [item["overhead"] for item in inputs],
                         lambda v: f"{v:.1%}", lambda v: v <= most)]  # fmt: skip
    for key, label in SCALING:
        lines.append(target_line(f"{label}, words/s (target ≥ {fmt_x(least, 1)}×)", inputs,
                                 [item["ratios"][key] for item in inputs], lambda v: f"{fmt_x(v)}×",
                                 lambda v: v >= least))  # fmt: skip
    return lines


def agreement_line(inputs: Sequence[Mapping[str, Any]]) -> str:
    if all(item["entities_agree"] for item in inputs):
        counts = ", ".join(f"{item['name']} {fmt_int(next(iter(item['entities'].values())))}" for item in inputs)
        return f"- Entity counts: all {len(inputs[0]['entities'])} engines agree on every input ({counts})."
    parts = [f"{item['name']}: " + ", ".join(f"{e} {fmt_int(n)}" for e, n in item["entities"].items())
             for item in inputs if not item["entities_agree"]]  # fmt: skip
    return f"- Entity counts: the engines **disagree** ({'; '.join(parts)})."


def fixed_cost(inputs: Sequence[Mapping[str, Any]], engine: str) -> Optional[Tuple[float, float]]:
    """(fixed seconds, words/s after them) of ``engine`` from its seconds on the smallest and
    largest input: seconds = fixed + words / rate. None if missing or if the two do not
    separate them (the larger input no slower, or a negative fixed cost: noise)."""
    runs = [{run["engine"]: run for run in item["runs"]}.get(engine) for item in (inputs[0], inputs[-1])]
    if None in runs:
        return None
    small, big = runs
    words, seconds = big["words"] - small["words"], big["seconds"] - small["seconds"]
    if words <= 0 or seconds <= 0:
        return None
    rate = words / seconds
    fixed = small["seconds"] - small["words"] / rate
    return (fixed, rate) if fixed >= 0 else None


def n_machines(report: Mapping[str, Any]) -> str:
    inputs = report["inputs"]
    small, big = inputs[0], inputs[-1]
    fits: Dict[str, Tuple[float, float]] = {}
    for engine in ("ray1", "ray2"):
        fit = fixed_cost(inputs, engine)
        if fit is not None:
            fits[engine] = fit
    said = [f"{ENGINE_LABELS[e]} had a fixed cost of about {fixed:.1f} s, then {fmt_int(rate)} words/s"
            for e, (fixed, rate) in fits.items()]  # fmt: skip
    if said:
        fit_text = (f"from the seconds on {small['name']} and {big['name']}, {'; '.join(said)}: a job must run well "
                    "beyond that fixed cost per actor before more actors pay off.")  # fmt: skip
    else:
        fit_text = (f"the seconds on {small['name']} and {big['name']} do not separate that fixed cost from the rate "
                    "in this run (the larger input was not slower in proportion: noise or warm-up).")  # fmt: skip
    if "ray2" in fits:
        fixed, rate = fits["ray2"]
        words = {run["engine"]: run for run in big["runs"]}["ray2"]["words"]
        seconds = {n: fixed + words / (n * rate) for n in (1, 4, 16)}
        estimate = ", ".join(f"{n} machine{'s' if n > 1 else ''} {t:.1f} s" for n, t in seconds.items())
        projection = (f"So N machines of 2 workers each would annotate W words in about {fixed:.1f} + W / (N × "
                      f"{fmt_int(rate)}) seconds, as long as the driver keeps up: for {big['name']} ({fmt_int(words)} "
                      f"words), {estimate}; at 16 machines the fixed cost is {fixed / seconds[16]:.0%} of the job.")  # fmt: skip
    else:
        projection = "With no fit for 2 Ray workers, this run gives no figure for N machines."
    ray_scaling = big["ratios"].get("ray2_over_ray1")
    return N_MACHINES.format(
        ray_scaling=f"{fmt_x(ray_scaling)}×" if ray_scaling is not None else f"{NA} (not measured)",
        big=big["name"],
        load=f"{report['pipeline_load_seconds']:.1f}",
        fits=fit_text,
        ray_start=NA if report.get("ray_start_seconds") is None else f"{report['ray_start_seconds']:.1f}",
        projection=projection,
    )
