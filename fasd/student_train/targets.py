"""Attach cached teacher targets to the student's domains, checking the store first.

Every frame the trainer will use must be in the store, and each dataset's source fingerprint must
still match; otherwise one line says what is missing and which command caches it.
"""

from __future__ import annotations

from fasd.errors import FasdError
from fasd.store_schema.reader import load_targets, source_mismatch
from fasd.store_schema.store import open_store
from fasd.student_train.data import DomainRows


def attach_targets(store_path: str, domain_sets: list[list[DomainRows]]) -> dict:
    """Fill ``store_feature``/``store_logits`` of every DomainRows in ``domain_sets`` (e.g. [train, val]).

    Returns the store's teacher fingerprint (recorded in the run's config).
    """
    store = open_store(store_path)
    loaded = {}
    for parts in domain_sets:
        for part in parts:
            name = part.source.name
            if name not in loaded:
                store.dataset(name)
                why = source_mismatch(store, name, part.source.fingerprint())
                if why:
                    raise FasdError(f"the store's copy of '{name}' is stale: {why}; re-cache it with "
                                    f"`fasd cache-teacher --dataset {name} --store {store_path} --overwrite`")
                loaded[name] = load_targets(store, name)
            targets = loaded[name]
            frame_ids = part.source.table.frame_id[part.rows]
            store_rows = targets.rows_for(frame_ids)
            missing = frame_ids[store_rows < 0]
            if len(missing):
                raise FasdError(
                    f"{len(missing)} of {len(frame_ids)} frames of '{name}' needed for training are missing from "
                    f"{store_path} (e.g. {', '.join(map(str, missing[:3]))}); cache them with "
                    f"`fasd cache-teacher --dataset {name} --store {store_path}`")
            part.store_feature = targets.feature[store_rows]
            part.store_logits = targets.logits[store_rows]
    return store.teacher
