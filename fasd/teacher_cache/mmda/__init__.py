"""The MMDA teacher (paper B): a CLIP ViT whose per-modality tokens are fused by MD2A, adapted by U-DSA and
aligned to caption-defined class subspaces by RS2. fasd trains it itself (no public code or weights).

open_clip is imported here and in the rest of fasd.teacher_cache only, never by fasd.student_train.
"""
