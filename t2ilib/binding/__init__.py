"""Beyond the papers (notebook 11): word-level variants that bind each colour word to its part.

Built on :mod:`t2ilib.ssagan` and :mod:`t2ilib.sisgan`, never imported by them.
"""
