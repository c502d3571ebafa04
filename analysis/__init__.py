"""Judge answers: agreement, accuracy, bootstrap intervals and the report.

This package reads only what ``study`` logged (the predictions table and the
run's metadata) and shares with it nothing but the vocabulary in
:mod:`study.lirads`.
"""
