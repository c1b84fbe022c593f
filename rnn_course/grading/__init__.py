"""Safe, parallel grading of nbgrader submissions (``rnn-course grade``; the instructor's side of the exercises).

Plain ``nbgrader autograde`` runs the tests inside the student's kernel, after the student's code, with
the instructor's rights: a student can fake a pass there, read the hidden tests or damage the gradebook.
Here the roles are split:

* the student's notebook runs in a **sandbox** (bubblewrap, an unprivileged uid, no network, a private
  scratch folder, resource limits) under nbgrader's real ``autograde``, with the *released* notebook as
  its only reference, so nothing secret is inside (:mod:`.sandbox`, :mod:`.driver`);
* a last cell appended by the grader, the **probe**, then serves requests: "call your function NAME with
  these arguments" (:mod:`.probe`);
* the **tests run in the grading process**, outside the sandbox: the source notebook's test cells
  (hidden tests included) call the student's functions through **proxies** that send the arguments as
  plain data and get the results back as plain data, never pickle (:mod:`.protocol`, :mod:`.runner`);
  a part's points count only if its test cell ran to the end in the grader's own process;
* the main process is the only writer of the gradebook, the grade table and the feedback
  (:mod:`.gradebook`, :mod:`.report`); workers, one per core, only return results (:mod:`.command`).

Submissions are found and checked by :mod:`.intake`. Importing this package is cheap: the probe imports
it inside every student's kernel.
"""

import sys as _sys


def skip_slow_imports() -> None:
    """jsonschema (under nbformat) imports ``rfc3987_syntax`` if installed, which builds a grammar for 3 s;
    the notebook schema never uses that format. Must run before nbformat is imported (the grader's
    processes; the sandbox's driver, which cannot import this package, does the same itself)."""
    _sys.modules.setdefault("rfc3987_syntax", None)
