"""The whole SyncTalk job from Python, one typed function per stage (the CLI and the nodes call these too).

    from synctalk_lib import pipeline

    subject = pipeline.preprocess("talk.mp4", "work/talk/subject")        # Subject: clip, track, pose, features
    model = pipeline.train(subject, "work/talk/model", preset="auto")     # SyncTalkModel (a model folder)
    result = pipeline.drive(model, "new_speech.wav", "talking_head.mp4")  # encode -> render -> blend -> MP4
    report = pipeline.evaluate(model, subject, speech={"new": "new_speech.wav"}, silence=True)  # the numbers

or all of it: ``pipeline.demo("talk.mp4", "talking_head.mp4", audio="new_speech.wav")``. Every stage reuses its
finished work when its inputs and settings are unchanged (``pipeline.stages``).
"""
from synctalk_lib.pipeline.demo_job import DemoResult, demo
from synctalk_lib.pipeline.driving import DriveResult, drive, encode, load_speech
from synctalk_lib.pipeline.evaluation import EvaluationReport
from synctalk_lib.pipeline.evaluation import evaluate_model as evaluate
from synctalk_lib.pipeline.preprocessing import PreprocessSettings, preprocess
from synctalk_lib.pipeline.training import load_model, train
from synctalk_lib.subject import Subject, SubjectDir


def load_subject(folder) -> Subject:
    """A subject folder written by ``preprocess``."""
    return SubjectDir(folder).load_subject()


def render(model, features, **options):
    """Render ``model`` speaking ``features`` in chunks (see ``synctalk_lib.nerf.inference.render_frames``)."""
    from synctalk_lib.nerf.inference import render_frames

    return render_frames(model, features, **options)


__all__ = ["DemoResult", "DriveResult", "EvaluationReport", "PreprocessSettings", "Subject", "demo", "drive", "encode", "evaluate",
           "load_model", "load_speech", "load_subject", "preprocess", "render", "train"]
