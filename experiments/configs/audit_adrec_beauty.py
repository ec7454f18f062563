"""The ADRec claim on Amazon Beauty, audited against four tuned sequential baselines.

  python experiments/audit.py --config=experiments/configs/audit_adrec_beauty.py \
      --output_dir=results/audit-adrec-beauty

Smoke version (2 trials per model, 2 seeds, at most 2 epochs per stage):

  python experiments/audit.py --config=experiments/configs/audit_adrec_beauty.py --smoke \
      --output_dir=/tmp/audit-adrec-beauty-smoke

Data: the ADRec release's Amazon Beauty sequences (``<repo>/../shared/data/adrec-beauty``),
leave-one-out (last item test, the one before valid), histories of the last 50 items, full
ranking, history items not excluded (as the papers). Every model gets 20 TPE trials on
validation NDCG@20 over its default space (``diffrec_jax.models.search_spaces``: learning rate,
dropouts, weight decay; ADRec also the MSE weight, DreamRec the guidance weight and the
unconditional probability), the rest at the papers' settings, then 3 training seeds of its
chosen configuration on test. The budget is smaller than the ML-1M audits': one ADRec trial
trains three stages (about an hour on a 2-core CPU).

Reported numbers: the ADRec paper (Chen, Xu, Jiang, KDD 2025), Table 2, Beauty, as quoted in
``shared/reference/sequential.md`` (approximate).
"""

from __future__ import annotations

from pathlib import Path

from diffrec_jax.audit import AuditConfig

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "adrec-beauty"


def get_config() -> AuditConfig:
    return AuditConfig(
        name="adrec-beauty",
        dataset=f"sequences:{DATA / 'sequences.txt'}",
        target="adrec",
        baselines=("sasrec+", "gru4rec", "diffurec", "dreamrec"),
        reported={"HitRate@20": 0.1682, "NDCG@20": 0.0832},
        reported_source="ADRec paper (Chen, Xu, Jiang, KDD 2025), Table 2, Beauty (approximate)",
        budget=20,
        method="tpe",
        seeds=(1, 2, 3),
        select_metric="NDCG@20",
        ks=(5, 10, 20),
        metrics=("HitRate@10", "HitRate@20", "NDCG@10", "NDCG@20"),
        output_dir="results/audit-adrec-beauty",
    )
