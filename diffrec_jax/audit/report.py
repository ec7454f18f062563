"""The audit's report folder: a markdown report, PNG plots and the raw results.

:func:`write_report` turns the results of :func:`diffrec_jax.audit.run_audit` into::

    report.md              verdicts, accuracy, significance, reproducibility, cost,
                           diagnostics and tuning tables, the command and the environment
    accuracy_vs_cost.png   test select metric (mean +- std) against training time and
                           inference time per 1,000 users
    metrics.png            one bar chart per metric, mean +- std over seeds, reported numbers
                           as dashed lines
    diagnostics_<model>.png  accuracy and top-K overlap of every reverse-process variant
    results.json           everything the tables are made of

Plots use matplotlib's object-oriented API (no pyplot, no global backend change); without
matplotlib the report is written without them and says so. Every file is written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diffrec_jax import models as model_zoo
from diffrec_jax.audit import diagnostics as diag
from diffrec_jax.results import atomic_write, write_json_atomic


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _sci(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3g}"


def _p(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _mb(value: Any) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _mean_std(entry: Mapping[str, Any] | None, seeds: int) -> str:
    if not entry:
        return "n/a"
    return _f(entry["mean"]) + (f" ± {_f(entry['std'])}" if seeds > 1 else "")


# -- plots ----------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def _colors(models: Sequence[str], target: str, best: str | None) -> list[str]:
    return ["tab:red" if m == target else "tab:blue" if m == best else "tab:gray" for m in models]


def plot_accuracy_vs_cost(results: Mapping[str, Any], path: Path) -> Path | None:
    """Test select metric against training time and inference time per 1,000 users."""
    fig = _figure(10, 4.2)
    if fig is None:
        return None
    config = results["config"]
    sel = config["select_metric"]
    summary = results["statistics"]["summary"]
    best = results["statistics"]["best_baseline"]
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (field, label) in zip(
        axes,
        [
            ("fit_seconds", "training time per fit (s)"),
            ("inference_seconds_per_1000_users", "inference time per 1,000 users (s)"),
        ],
        strict=True,
    ):
        for model, entry in summary.items():
            x = results["cost"][model].get(field)
            if not x or x <= 0:
                continue
            y = entry["test"][sel]
            color = _colors([model], config["target"], best)[0]
            ax.errorbar(x, y["mean"], yerr=y["std"], fmt="o", color=color, capsize=3)
            ax.annotate(
                model, (x, y["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        if sel in config["reported"]:
            ax.axhline(config["reported"][sel], ls="--", color="tab:red", lw=1, label="reported")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {sel} (mean ± std over seeds)")
    fig.suptitle(f"{results['config']['name']}: accuracy vs cost")
    return _save(fig, path)


def plot_metrics(results: Mapping[str, Any], path: Path) -> Path | None:
    """One bar chart per metric: mean ± std over seeds per model, reported numbers dashed."""
    config = results["config"]
    metrics = config["metrics"]
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = _figure(5.2 * cols, 3.2 * rows)
    if fig is None:
        return None
    summary = results["statistics"]["summary"]
    models = list(summary)
    colors = _colors(models, config["target"], results["statistics"]["best_baseline"])
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        means = [summary[m]["test"][metric]["mean"] for m in models]
        stds = [summary[m]["test"][metric]["std"] for m in models]
        ax.bar(range(len(models)), means, yerr=stds, color=colors, capsize=3)
        if metric in config["reported"]:
            ax.axhline(config["reported"][metric], ls="--", color="tab:red", lw=1)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"test {metric}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"{config['name']}: mean ± std over {_seeds(len(config['seeds']))} "
        "(red: audited model, blue: best baseline, dashed: reported)"
    )
    return _save(fig, path)


def plot_diagnostics(
    results: Mapping[str, Any], model: str, entry: Mapping[str, Any], path: Path
) -> Path | None:
    """Accuracy and top-K overlap of every reverse-process variant of one diffusion model."""
    fig = _figure(10, 3.8)
    if fig is None:
        return None
    sel = results["config"]["select_metric"]
    metric = sel if sel in results["config"]["metrics"] else results["config"]["metrics"][0]
    rows = entry["variants"]
    labels = [r["label"] for r in rows]
    ax1, ax2 = fig.subplots(1, 2)
    ax1.barh(
        range(len(rows)),
        [r["metrics"][metric]["mean"] for r in rows],
        xerr=[r["metrics"][metric]["std"] for r in rows],
        color=["tab:red" if r["name"] == "configured" else "tab:gray" for r in rows],
        capsize=3,
    )
    ax1.set_yticks(range(len(rows)), labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel(f"test {metric}")
    ax1.grid(axis="x", alpha=0.3)
    k = entry["k"]
    between = [r["jaccard_between_seeds"] for r in rows]
    versus = [r["jaccard_vs_configured"] for r in rows]
    y = range(len(rows))
    ax2.barh(
        [i - 0.2 for i in y],
        [v if v is not None else 0 for v in between],
        0.4,
        label="between sampling seeds",
        color="tab:orange",
    )
    ax2.barh([i + 0.2 for i in y], versus, 0.4, label="vs configured", color="tab:purple")
    ax2.set_yticks(list(y), labels, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 1.05)
    ax2.set_xlabel(f"Jaccard overlap of top-{k} lists")
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    noise = entry["noise"]
    fig.suptitle(
        f"{model}: reverse-process variants (T = {noise['steps']}, "
        f"sqrt(1 - alpha_bar_T) = {noise['noise_T']:.3g})"
    )
    return _save(fig, path)


# -- markdown -------------------------------------------------------------------------------------


def _verdict_lines(results: Mapping[str, Any]) -> list[str]:
    config = results["config"]
    st = results["statistics"]
    target = config["target"]
    sel = config["select_metric"]
    lines = []
    summary = st["summary"].get(target)
    seeds = len(config["seeds"])
    if summary is None:
        return [f"- {target}: no finished run (see the tuning section)."]
    lines.append(
        f"- {target}, test {sel}: {_mean_std(summary['test'][sel], seeds)} over {seeds} seeds."
    )
    for metric, v in st["verdicts"].items():
        stable = "n/a" if v["stable"] is None else ("stable" if v["stable"] else "NOT stable")
        cv = "n/a" if v["cv"] is None else f"{100 * v['cv']:.1f}%"
        lines.append(
            f"- reported {metric} {_f(v['reported'])}: **{v['text']}** (re-runs "
            f"{_f(v['mean'])} ± {_f(v['std'])}; {stable}, std/mean {cv})."
        )
    comp = st.get("comparison")
    if comp:
        c = comp["metrics"].get(sel) or next(iter(comp["metrics"].values()))
        metric = sel if sel in comp["metrics"] else next(iter(comp["metrics"]))
        rel = "n/a" if c["relative"] is None else f"{100 * c['relative']:+.1f}%"
        sig = c["wilcoxon"]["significant"]
        lines.append(
            f"- against the best tuned baseline, **{comp['b']}**: {metric} {rel} "
            f"({_f(c['mean_a'])} vs {_f(c['mean_b'])}), Wilcoxon p = "
            f"{_p(c['wilcoxon']['p_adjusted'])} ({comp['correction']}-corrected): "
            + ("significant" if sig else "not significant")
            + f" at {comp['alpha']}."
        )
    cost = results["cost"]
    if comp and target in cost and comp["b"] in cost:
        a, b = cost[target], cost[comp["b"]]
        if a["fit_seconds"] and b["fit_seconds"]:
            lines.append(
                f"- training time: {a['fit_seconds']:.1f}s vs {b['fit_seconds']:.1f}s per fit "
                f"({a['fit_seconds'] / b['fit_seconds']:.1f}x)."
            )
    for model, d in results["diagnostics"].items():
        rows = {r["name"]: r for r in d["variants"]}
        metric = sel if sel in config["metrics"] else config["metrics"][0]
        if "single_call" in rows:
            conf = rows["configured"]["metrics"][metric]["mean"]
            single = rows["single_call"]["metrics"][metric]["mean"]
            lines.append(
                f"- {model}: noise after T={d['noise']['steps']} steps sqrt(1 - alpha_bar_T) = "
                f"{d['noise']['noise_T']:.3g}; one denoiser call instead of "
                f"{rows['configured']['denoiser_calls']}: {metric} {_f(single)} vs {_f(conf)}."
            )
    return lines


def _best_model(summary: Mapping[str, Any], metric: str) -> str:
    """The model of the summary with the highest mean test `metric` (the first on a tie)."""
    return max(summary, key=lambda name: summary[name]["test"][metric]["mean"])


def _accuracy_section(results: Mapping[str, Any]) -> str:
    config = results["config"]
    st = results["statistics"]
    seeds = len(config["seeds"])
    sel = config["select_metric"]
    header = ["model", f"valid {sel}", *(f"test {m}" for m in config["metrics"]), "trial"]
    rows = []
    best_per_metric = {m: _best_model(st["summary"], m) for m in config["metrics"]}
    for model, e in st["summary"].items():
        name = model
        if model == config["target"]:
            name = f"**{model}** (audited)"
        elif model == st["best_baseline"]:
            name = f"{model} (best baseline)"
        cells = []
        for m in config["metrics"]:
            text = _mean_std(e["test"][m], seeds)
            cells.append(f"**{text}**" if best_per_metric[m] == model else text)
        trial = results["tuning"][model]["best"]["index"] + 1
        rows.append([name, _mean_std(e["valid"][sel], seeds), *cells, trial])
    if config["reported"]:
        rows.append(
            [
                f"{config['target']} (reported)",
                "",
                *(
                    _f(config["reported"].get(m)) if m in config["reported"] else ""
                    for m in config["metrics"]
                ),
                "",
            ]
        )
    text = _table(header, rows)
    missing = [m for m in (config["target"], *config["baselines"]) if m not in st["summary"]]
    if missing:
        text += f"\n\nNo finished run, left out: {', '.join(missing)} (see the tuning section)."
    return text


def _significance_section(results: Mapping[str, Any]) -> str:
    comp = results["statistics"].get("comparison")
    if not comp:
        return "No comparison (the audited model or every baseline has no finished run)."
    header = [
        "metric",
        comp["a"],
        comp["b"],
        "diff",
        "relative",
        f"users {comp['a']} better / worse",
        "Wilcoxon p (adj.)",
        "t-test p (adj.)",
        f"significant at {comp['alpha']}",
    ]
    rows = []
    for metric, c in comp["metrics"].items():
        w, t = c["wilcoxon"], c["ttest"]
        rel = "n/a" if c["relative"] is None else f"{100 * c['relative']:+.2f}%"
        sig = [name for name, x in (("Wilcoxon", w), ("t-test", t)) if x["significant"]]
        rows.append(
            [
                metric,
                _f(c["mean_a"]),
                _f(c["mean_b"]),
                f"{c['diff']:+.4f}",
                rel,
                f"{c['a_better']} / {c['b_better']} (of {c['users']})",
                f"{_p(w['p'])} ({_p(w['p_adjusted'])})",
                f"{_p(t['p'])} ({_p(t['p_adjusted'])})",
                ", ".join(sig) or "no",
            ]
        )
    note = (
        f"\n\nPer-user test values averaged over the {len(comp['seeds'])} seeds, paired over "
        f"the {max(c['users'] for c in comp['metrics'].values())} users with test items; "
        f"two-sided tests; p-values adjusted with {comp['correction']} over the "
        f"{len(comp['metrics'])} metrics, per test."
    )
    return _table(header, rows) + note


def _reproducibility_section(results: Mapping[str, Any]) -> str:
    config = results["config"]
    verdicts = results["statistics"]["verdicts"]
    if not verdicts:
        return "No reported numbers in this configuration."
    header = [
        "metric",
        "reported",
        "re-runs mean ± std",
        "reported - mean",
        "z",
        "verdict",
        "std/mean",
        "stable",
    ]
    rows = []
    for metric, v in verdicts.items():
        rows.append(
            [
                metric,
                _f(v["reported"]),
                f"{_f(v['mean'])} ± {_f(v['std'])} ({v['runs']} runs)",
                f"{v['delta']:+.4f}",
                "n/a" if v["z"] is None else f"{v['z']:+.2f}",
                v["text"],
                "n/a" if v["cv"] is None else f"{100 * v['cv']:.2f}%",
                "n/a" if v["stable"] is None else ("yes" if v["stable"] else "no"),
            ]
        )
    source = config.get("reported_source") or "not given"
    return _table(header, rows) + (
        f"\n\nReported numbers: {source}. Reproduced = within one standard deviation of the "
        f"re-runs' mean; stable = std/mean below {100 * config['stable_cv']:g}%."
    )


def _cost_section(results: Mapping[str, Any]) -> str:
    header = [
        "model",
        "tuning s",
        "training s / fit",
        "inference s / 1k users",
        "train step GFLOP",
        "training TFLOP",
        "scoring GFLOP / 1k users",
        "XLA step MB (train / score)",
        "peak RSS MB",
        "energy kWh (tuning + fits)",
        "CO2 g",
    ]
    rows, notes = [], []
    for model, c in results["cost"].items():
        e = c["energy"]["total"]
        step_mem = f"{_mb(c['train_step_memory_bytes'])} / {_mb(c['score_memory_bytes'])}"
        rows.append(
            [
                model,
                _f(c["tuning_seconds"], 1),
                _f(c["fit_seconds"], 2),
                _f(c["inference_seconds_per_1000_users"], 3),
                _sci(None if c["train_step_flops"] is None else c["train_step_flops"] / 1e9),
                _sci(None if c["train_total_flops"] is None else c["train_total_flops"] / 1e12),
                _sci(
                    None
                    if c["score_flops_per_1000_users"] is None
                    else c["score_flops_per_1000_users"] / 1e9
                ),
                step_mem,
                _mb(c["process_peak_rss_bytes"]),
                _sci(e["kwh"]),
                _sci(e["co2_g"]),
            ]
        )
        notes += [f"{model}: {n}" for n in c["flops_notes"]]
    text = _table(header, rows)
    text += (
        f"\n\n**Assumptions:** {results['assumptions']['text']}. Energy and CO2 cover the "
        "tuning plus every seed's fit. FLOPs from XLA's cost analysis of the compiled "
        "computations with loops unrolled (training: one update step x steps per epoch x "
        "epochs; n/a for closed-form models fit on the host). Peak RSS is the process's "
        "high-water mark when the model's first seed finished (it includes earlier models)."
    )
    if notes:
        text += "\n\nFLOP count notes: " + "; ".join(notes) + "."
    return text


def _diagnostics_section(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    config = results["config"]
    parts = []
    if not results["diagnostics"]:
        target = config["target"]
        if not diag.is_diffusion(model_zoo.get(target)):
            return (
                f"The diagnostics (noise level, reverse process variants, top-K overlap) cover "
                f"the DiffRec family of user-vector diffusion models; {target} is not one of "
                "them."
            )
        return "No diffusion model with a finished run."
    for model, d in results["diagnostics"].items():
        n = d["noise"]
        parts.append(f"### {model}\n")
        parts.append(
            _table(
                [
                    "T",
                    "alpha_bar_T",
                    "sqrt(1 - alpha_bar_T)",
                    "SNR_T",
                    "sampling_steps",
                    "noise added at inference",
                    "denoiser calls / user",
                ],
                [
                    [
                        n["steps"],
                        f"{n['alpha_bar_T']:.6f}",
                        f"{n['noise_T']:.4g}",
                        f"{n['snr_T']:.4g}",
                        n["sampling_steps"],
                        f"{n['noise_at_inference']:.4g}",
                        n["denoiser_calls"],
                    ]
                ],
            )
        )
        header = [
            "variant",
            "denoiser calls",
            "noise at start",
            *(f"test {m}" for m in config["metrics"]),
            f"Jaccard@{d['k']} between seeds",
            f"Jaccard@{d['k']} vs configured",
            "scoring GFLOP / 1k users",
        ]
        rows = []
        for r in d["variants"]:
            rows.append(
                [
                    r["label"],
                    r["denoiser_calls"],
                    f"{r['noise_at_inference']:.3g}",
                    *(_mean_std(r["metrics"][m], r["sampling_seeds"]) for m in config["metrics"]),
                    "deterministic"
                    if r["jaccard_between_seeds"] is None
                    else f"{r['jaccard_between_seeds']:.3f} ({r['sampling_seeds']} seeds)",
                    f"{r['jaccard_vs_configured']:.3f}",
                    _sci(
                        None
                        if r["score_flops_per_1000_users"] is None
                        else r["score_flops_per_1000_users"] / 1e9
                    ),
                ]
            )
        parts.append("\n" + _table(header, rows))
        if f"diagnostics_{model}" in plots:
            parts.append(f"\n![{model} diagnostics]({plots[f'diagnostics_{model}']})")
        parts.append("")
    parts.append(
        "The parameters of the first seed's run, scored with the model's own reverse-process "
        "options: `single denoiser call` = reverse 'corrected' with sampling_steps 0; "
        "`k noising + k reverse steps` = reverse 'corrected' with sampling_steps k; stochastic "
        "variants are averaged over sampling seeds, and their top-K lists compared pairwise."
    )
    return "\n".join(parts)


def _tuning_section(results: Mapping[str, Any]) -> str:
    header = [
        "model",
        "trials",
        "failed",
        "valid " + results["config"]["select_metric"],
        "tuning s",
        "chosen hyperparameters",
    ]
    rows = []
    for model, t in results["tuning"].items():
        best = t["best"]
        params = ", ".join(f"{k}={_short(v)}" for k, v in (best or {}).get("params", {}).items())
        if best is None:
            params = f"no trial finished: {t.get('first_error') or 'no value'}"
        rows.append(
            [
                model,
                t["n_trials"],
                t["n_failed"],
                _f(None if best is None else best["value"]),
                _f(t["tuning_seconds"], 1),
                params or "(nothing searched)",
            ]
        )
    return _table(header, rows)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The report text; `plots` maps plot names to file names in the report folder."""
    config = results["config"]
    env = results["environment"]
    ds = results["dataset"]
    stats_ = ds.get("stats") or {}
    git = env.get("git") or {}
    lines = [
        f"# Audit: {config['name']}",
        "",
        f"{config['target']} against {', '.join(config['baselines'])} on **{ds['name']}** "
        f"({stats_.get('users', '?')} users, {stats_.get('items', '?')} items, "
        f"{stats_.get('interactions', '?')} interactions).",
        "",
        f"Every model tuned on validation with the same budget ({config['budget']} "
        f"{config['method']} trials, seed {config['tuning_seed']}, maximising valid "
        f"{config['select_metric']}), then its chosen configuration trained with "
        f"{len(config['seeds'])} seeds ({', '.join(map(str, config['seeds']))}) and evaluated "
        f"on test once per seed ({config['convention']} convention, full ranking).",
    ]
    if config.get("max_epochs"):
        lines += ["", f"Epochs capped at {config['max_epochs']} (a scaled-down audit)."]
    if results.get("command"):
        lines += ["", "Command:", "", "```", results["command"], "```"]
    lines += ["", "## Verdict", "", *_verdict_lines(results)]
    lines += ["", f"## Accuracy (test, mean ± std over {_seeds(len(config['seeds']))})", ""]
    lines += [_accuracy_section(results)]
    if "metrics" in plots:
        lines += ["", f"![metrics]({plots['metrics']})"]
    lines += ["", "## Significance: audited model vs best baseline", ""]
    lines += [_significance_section(results)]
    lines += [
        "",
        "## Reproducibility of the reported numbers",
        "",
        _reproducibility_section(results),
    ]
    lines += ["", "## Cost", "", _cost_section(results)]
    if "accuracy_vs_cost" in plots:
        lines += ["", f"![accuracy vs cost]({plots['accuracy_vs_cost']})"]
    lines += ["", "## Diffusion diagnostics", "", _diagnostics_section(results, plots)]
    lines += ["", "## Tuning", "", _tuning_section(results)]
    lines += [
        "",
        "## Environment and files",
        "",
        f"- {env.get('time_utc')}, jax backend {env.get('jax_backend')}, "
        f"{len(env.get('devices', []))} device(s), {env.get('cpu_count')} CPUs, "
        f"{env.get('platform')}; git {git.get('commit', 'n/a')}"
        + (" (dirty)" if git.get("dirty") else ""),
        "- `results.json`: every figure of this report; the per-run records and per-user test "
        "values are in `../runs/`, the studies in `../studies/`, the diagnostics in "
        "`../diagnostics/`.",
    ]
    if not plots:
        lines += ["- plots: not drawn (matplotlib is not installed)."]
    return "\n".join(lines) + "\n"


def write_report(results: Mapping[str, Any], folder: str | Path) -> Path:
    """Writes report.md, the plots and results.json into `folder`; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "results.json", results)
    plots: dict[str, str] = {}
    drawn = [
        ("metrics", plot_metrics(results, folder / "metrics.png")),
        ("accuracy_vs_cost", plot_accuracy_vs_cost(results, folder / "accuracy_vs_cost.png")),
    ]
    for model, entry in results["diagnostics"].items():
        path = folder / f"diagnostics_{model}.png"
        drawn.append((f"diagnostics_{model}", plot_diagnostics(results, model, entry, path)))
    plots = {name: path.name for name, path in drawn if path is not None}
    with atomic_write(folder / "report.md") as f:
        f.write(markdown(results, plots))
    return folder


__all__ = [
    "markdown",
    "plot_accuracy_vs_cost",
    "plot_diagnostics",
    "plot_metrics",
    "write_report",
]
