"""Reading project files at git revisions, for `pld review`.

Everything goes through the `git` command line (no library dependency) with the project root
as the working directory, so a project that lives in a sub-folder of its repository works:
`REV:./path` and `ls-tree` resolve paths relative to that folder.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import PldError
from ..textio import decode_text

#: Branches tried, in order, when looking for the default branch to take the merge base with.
DEFAULT_BRANCH_CANDIDATES = ("origin/main", "origin/master", "main", "master")

SHALLOW_HINT = (
    "this is a shallow clone without that commit: run `git fetch --unshallow` "
    "(or `git fetch origin BRANCH`), or in GitHub Actions check out with "
    "`actions/checkout` and `fetch-depth: 0`"
)


@dataclass(frozen=True)
class Revision:
    """One side of a comparison: a commit, or the working tree when `sha` is None."""

    spec: str | None  # what the user asked for (None: the working tree)
    sha: str | None
    description: str  # for reports: "abc1234 (merge base of HEAD and origin/main)"

    @property
    def is_worktree(self) -> bool:
        return self.sha is None

    @property
    def short(self) -> str:
        return "worktree" if self.sha is None else self.sha[:7]


WORKTREE = Revision(None, None, "working tree")


class GitRepo:
    """The project's repository, seen from the project root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        if self._run("rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
            raise PldError(
                f"{root} is not inside a git repository",
                hint="`pld review` compares git revisions; run it in a clone",
            )

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, check=False)
        except FileNotFoundError:
            raise PldError("the git command was not found", hint="install git") from None
        if check and proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip() or "failed"
            raise PldError(f"git {' '.join(args)}: {message}")
        return proc

    def _out(self, *args: str) -> str | None:
        proc = self._run(*args, check=False)
        return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else None

    def is_ignored(self, path: str) -> bool | None:
        """Whether the repository's ignore rules cover `path` (None: git could not tell)."""
        return {0: True, 1: False}.get(
            self._run("check-ignore", "-q", path, check=False).returncode
        )

    def is_shallow(self) -> bool:
        return self._out("rev-parse", "--is-shallow-repository") == "true"

    def commit_of(self, spec: str) -> str | None:
        return self._out("rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}") or None

    def resolve(self, spec: str, *, role: str) -> Revision:
        """A user-given revision; a clear error when it does not exist."""
        sha = self.commit_of(spec)
        if sha is None:
            hint = (
                SHALLOW_HINT
                if self.is_shallow()
                else "check the name with `git branch -a` or `git log --oneline`"
            )
            raise PldError(f"{role} revision {spec!r} not found in the repository", hint=hint)
        return Revision(spec, sha, f"{spec} ({sha[:7]})" if not sha.startswith(spec) else sha[:7])

    def default_branch(self) -> str | None:
        """origin/HEAD's target, else the first of origin/main, origin/master, main, master."""
        target = self._out("symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
        candidates = ([target] if target else []) + list(DEFAULT_BRANCH_CANDIDATES)
        return next((c for c in candidates if self.commit_of(c)), None)

    def default_base(self) -> tuple[Revision, str | None]:
        """The merge base of HEAD with the default branch, or HEAD~1 with a note saying why."""
        if self.commit_of("HEAD") is None:
            raise PldError(
                "the repository has no commits yet, so there is no base to compare with",
                hint="commit first, or pass --base REV",
            )
        branch = self.default_branch()
        if branch is not None:
            base = self._out("merge-base", "HEAD", branch)
            if base:
                return Revision(None, base, f"{base[:7]} (merge base of HEAD and {branch})"), None
            if self.is_shallow():
                raise PldError(
                    f"cannot find the merge base of HEAD and {branch}", hint=SHALLOW_HINT
                )
            raise PldError(
                f"HEAD and {branch} have no common ancestor",
                hint="pass the revision to compare with as --base REV",
            )
        parent = self.commit_of("HEAD~1")
        if parent is None:
            if self.is_shallow():
                raise PldError(
                    "no default branch (origin/HEAD, main, master) and no parent "
                    "commit in this clone",
                    hint=SHALLOW_HINT,
                )
            raise PldError(
                "no default branch (origin/HEAD, main, master) and HEAD has no parent",
                hint="pass the revision to compare with as --base REV",
            )
        note = (
            "no default branch (origin/HEAD, main or master) was found, so the base is "
            "HEAD~1; pass --base REV to choose another"
        )
        return Revision("HEAD~1", parent, f"{parent[:7]} (HEAD~1)"), note

    def list_files(self, rev: Revision, folder: str) -> list[str]:
        """Project-relative paths of the files under `folder` at `rev` (recursively)."""
        if rev.is_worktree:
            base = self.root / folder
            if not base.is_dir():
                return []
            return sorted(
                p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file()
            )
        out = self._out("ls-tree", "-r", "--name-only", str(rev.sha), "--", folder)
        return sorted(line for line in (out or "").splitlines() if line)

    def read(self, rev: Revision, path: str) -> str | None:
        """The text of a project-relative file at `rev`, or None when it does not exist there."""
        if rev.is_worktree:
            try:
                raw = (self.root / path).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                return None
        else:
            proc = self._run("cat-file", "blob", f"{rev.sha}:./{path}", check=False)
            if proc.returncode != 0:
                return None
            raw = proc.stdout
        # not UTF-8 at that revision: a PldError naming the byte, never a garbled rule
        return decode_text(raw, f"{path}@{rev.short}", what="file")
