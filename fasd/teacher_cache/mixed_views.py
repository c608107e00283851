"""The cache job's frames for mixed views (``cache-teacher --views K --mix ...``; fasd.mixing).

Each of a frame's K views is mixed with its partner's view of the same index, and the teacher runs on the
mixed pixels. Partners are other rows of the same store chunk and split, so a shard (which owns whole chunks)
or a resumed run draws and reads exactly what one uninterrupted process does.
"""

from __future__ import annotations

import numpy as np
import torch

from fasd.data.source import FrameSource, UnreadableFrame
from fasd.mixing import apply_mix, partner_candidates
from fasd.teacher_cache.job import TeacherFrames
from fasd.views import ViewSettings, apply_view, draw_mixes, draw_views


class MixedTeacherFrames(TeacherFrames):
    """TeacherFrames whose views are mixed; the parameters it returns are (K, PARAMS + MIX) float64: each view's
    PARAM_COLUMNS then its MIX_COLUMNS (the job stores them as views/params and views/mix)."""

    def __init__(self, source: FrameSource, source_rows: np.ndarray, size: int, views: ViewSettings,
                 chunk_rows: int):
        super().__init__(source, source_rows, size, views)
        self.chunk_rows = chunk_rows
        self.splits = np.asarray(source.table.split)[source_rows]

    def _view(self, row: int, k: int) -> np.ndarray:
        """View k of store row ``row`` at the teacher's size (zeros when the frame cannot be decoded)."""
        source_row = int(self.source_rows[row])
        params = draw_views(self.source.table.frame_id[source_row], self.views)[k]
        try:
            return apply_view(self.source.read_image(source_row), params, self.size)
        except UnreadableFrame:
            return np.zeros((self.size, self.size, 3), dtype=np.uint8)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        pixels, views, params, readable = super().__getitem__(row)
        frame_id = self.source.table.frame_id[int(self.source_rows[row])]
        mixes = draw_mixes(frame_id, self.views, partner_candidates(row, self.chunk_rows, self.splits), self.size)
        if readable:
            views = torch.from_numpy(np.stack([
                apply_mix(views[k].numpy(), self._view(int(mix[0]), k), mix) if mix[1] < 1.0 else views[k].numpy()
                for k, mix in enumerate(mixes)]))
        return pixels, views, torch.from_numpy(np.concatenate([params.numpy().astype(np.float64), mixes], 1)), \
            readable


def verify_mixed(group, views: ViewSettings, source: FrameSource, picked: np.ndarray, chosen: np.ndarray,
                 view_pixels: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """For ``inspect --verify`` of a mixed-view store: the picked store rows' chosen views (``view_pixels``,
    unmixed, at ``size``) mixed with their stored partners as the job did, and whether the stored mixing equals a
    fresh draw."""
    from fasd.store_schema import layout
    from fasd.store_schema.store import read_strings

    frame_ids = read_strings(group[layout.FRAME_ID])
    splits = read_strings(group[layout.SPLIT])
    chunk_rows = int(group.attrs[layout.CHUNK_ROWS_ATTR])
    row_of = {str(f): i for i, f in enumerate(source.table.frame_id)}
    stored = group[layout.VIEW_MIX].get_orthogonal_selection((picked,))[np.arange(len(picked)), chosen]
    drawn = np.stack([draw_mixes(frame_ids[row], views, partner_candidates(int(row), chunk_rows, splits), size)[k]
                      for row, k in zip(picked, chosen)])
    mixed = []
    for pixels, mix, k in zip(view_pixels, stored, chosen):
        if mix[1] >= 1.0:
            mixed.append(pixels)
            continue
        partner = int(mix[0])
        params = group[layout.VIEW_PARAMS][partner, k]
        image = source.read_image(row_of[str(frame_ids[partner])])
        mixed.append(apply_mix(pixels, apply_view(image, params, size), mix))
    return np.stack(mixed), bool(np.array_equal(stored, drawn))
