"""TEST STAND-IN for the ``instruction_following_eval`` package (IFEval's checkers).

This is NOT the real package (which is not on PyPI). steerbench's offline tests put
``tests/stubs`` on ``sys.path`` so that ``inspect_evals/ifeval`` can be created and
scored without it. It implements only what inspect_evals' ``instruction_following``
scorer calls (``evaluation.InputExample``, ``evaluation.ensure_nltk_resource``,
``evaluation.test_instruction_following``) and only the instruction ids used by
steerbench's synthetic IFEval rows, with simple honest checks. It never imports
nltk, so nothing is downloaded. Scores from it are not comparable with real IFEval.
"""
