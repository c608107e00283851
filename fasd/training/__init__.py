"""What the teacher's and the student's training loops share: domain-balanced sampling, the learning-rate
schedule, the precision policy, image transforms, evaluation frames and run-directory file names.

Nothing here imports fasd.teacher_cache or fasd.student_train, so fine-tuning a teacher does not load the
student trainer, evaluation loads neither, and the student trainer never loads a teacher.
"""
