"""Student side: model, distillation losses, domain-balanced sampling, image transforms.

Nothing here imports the teacher side (open_clip, fasd.teacher_cache): the student trains
from cached teacher targets only.
"""
