#!/usr/bin/env python3
"""Lints deploy/Dockerfile: hadolint-like rules, plus checks against the repository it builds.

No image can be built where CI runs (no container daemon, no registry), so this is what keeps the
Dockerfile honest: each rule below is a mistake that would only show at `docker build` or
`docker run` time. Python 3.11+ standard library only (tomllib).

    python3 deploy/lint-dockerfile.py [--root DIR] [DOCKERFILE]

DOCKERFILE defaults to deploy/Dockerfile; --root (the build context: Cargo.toml, .dockerignore,
examples/portcullis.toml) to the repository holding this script. Prints one line per problem,
`FILE:LINE: rule: message`, and exits 1 if there is any.
"""

import argparse
import fnmatch
import json
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path

# Debian releases, to tell which glibc a tag builds or runs on.
DEBIAN_RELEASES = ("buster", "bullseye", "bookworm", "trixie", "forky")
# Cargo's built-in profiles and the target/ directory each writes to (others: target/<name>).
BUILTIN_PROFILE_DIRS = {"dev": "debug", "test": "debug", "release": "release", "bench": "release"}


class Instruction:
    def __init__(self, line, keyword, args):
        self.line, self.keyword, self.args = line, keyword, args


class Stage:
    def __init__(self, index, image, name, line):
        self.index, self.image, self.name, self.line = index, image, name, line
        self.instructions = []

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text):
    """Instructions (continuation lines joined, comments dropped), grouped into stages.
    Also returns the comment lines, where the usage notes live."""
    stages, comments, pending, start = [], [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            comments.append((number, stripped))
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical, pending = (pending + stripped).strip(), ""
        if not logical:
            continue
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(start, keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            image = next((w for w in words if not w.startswith("--")), "")
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else None
            stages.append(Stage(len(stages), image, name, start))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages, comments


def flags(args):
    """`--name=value` options at the start of COPY/ADD/RUN arguments, and the rest."""
    options, rest = {}, shlex.split(args)
    while rest and rest[0].startswith("--"):
        key, _, value = rest.pop(0)[2:].partition("=")
        options[key] = value
    return options, rest


def lint(dockerfile, root):
    """Every problem as (line, "FILE:LINE: rule: message")."""
    problems = []
    where = dockerfile.relative_to(root) if dockerfile.is_relative_to(root) else dockerfile

    def problem(line, rule, message):
        problems.append((line, f"{where}:{line}: {rule}: {message}"))

    stages, comments = parse(dockerfile.read_text())
    if not stages:
        problem(1, "from", "no FROM instruction")
        return problems
    lint_bases(stages, problem)
    for stage in stages:
        for ins in stage.instructions:
            lint_instruction(ins, stages[: stage.index], problem)
    lint_user(stages[-1], problem)
    lint_cargo_build(stages, root, problem)
    lint_expose(stages[-1], comments, root, problem)
    lint_dockerignore(stages, root, problem)
    return problems


def debian_release(image):
    return next((r for r in DEBIAN_RELEASES if r in image.rpartition(":")[2]), None)


def builds(stage):
    return any(re.search(r"\bcargo\s+build\b", i.args) for i in stage.all("RUN"))


def lint_bases(stages, problem):
    """pinned-base: an untagged or `latest` base changes under the build without a diff here.
    glibc: the binary links the build stage's glibc dynamically, so the final stage must be the
    same Debian release; `rust:1` names none and follows Debian's newest."""
    names, final = set(), stages[-1]
    for stage in stages:
        image = stage.image
        if image in names or image == "scratch":
            pass  # an earlier stage, or nothing at all
        elif "$" in image:
            problem(stage.line, "pinned-base", f"`{image}`: a build argument's base is unchecked")
        elif "@sha256:" not in image:
            tag = image.rpartition("/")[2].partition(":")[2]
            if not tag:
                problem(stage.line, "pinned-base", f"`{image}` has no tag: pin one (not `latest`)")
            elif tag == "latest":
                problem(stage.line, "pinned-base", f"`{image}`: `latest` moves; pin a version tag")
        if stage is not final and builds(stage) and image not in names:
            built, runs = debian_release(image), debian_release(final.image)
            if built is None:
                problem(
                    stage.line,
                    "glibc",
                    f"`{image}` names no Debian release: its glibc may outrun `{final.image}`'s",
                )
            elif runs and built != runs:
                problem(
                    stage.line, "glibc", f"built on {built}, runs on {runs}: the glibc must match"
                )
        if stage.name:
            names.add(stage.name)


def lint_instruction(ins, earlier_stages, problem):
    # exec-form: a shell-form ENTRYPOINT/CMD runs under /bin/sh, which does not pass
    # SIGTERM/SIGHUP on to the edge (no graceful stop, no reload).
    if ins.keyword in ("ENTRYPOINT", "CMD"):
        try:
            form = json.loads(ins.args)
        except json.JSONDecodeError:
            form = None
        if not (isinstance(form, list) and all(isinstance(a, str) for a in form)):
            problem(
                ins.line, "exec-form", f"{ins.keyword}: use a JSON array so signals reach the edge"
            )
    # no-add: ADD unpacks archives and fetches URLs as side effects; COPY does what it says.
    if ins.keyword == "ADD":
        _, sources = flags(ins.args)
        if not all(s.startswith(("http://", "https://")) for s in sources[:-1]):
            problem(ins.line, "no-add", "use COPY for local files")
    # copy-from: `--from` must name an earlier stage (not an image pulled on the side).
    if ins.keyword == "COPY":
        source = flags(ins.args)[0].get("from")
        earlier = [s.name for s in earlier_stages if s.name] + [
            str(s.index) for s in earlier_stages
        ]
        if source is not None and source not in earlier:
            problem(
                ins.line,
                "copy-from",
                f"--from={source}: not an earlier stage ({', '.join(earlier)})",
            )
    if ins.keyword == "WORKDIR" and not ins.args.startswith("/"):
        problem(ins.line, "workdir", f"WORKDIR {ins.args}: use an absolute path")
    if ins.keyword == "RUN":
        lint_apt(ins, problem)


def lint_user(final, problem):
    """non-root: the edge needs no root in a container; a numeric UID lets Kubernetes'
    runAsNonRoot verify that without reading /etc/passwd."""
    users = final.all("USER")
    if not users:
        problem(final.line, "non-root", "the final stage has no USER: the edge would run as root")
        return
    line, value = users[-1].line, users[-1].args
    user = value.partition(":")[0]
    if user in ("root", "0"):
        problem(line, "non-root", f"USER {value} runs the edge as root")
    elif not user.isdigit():
        problem(
            line, "non-root", f"USER {value}: use the numeric UID (runAsNonRoot checks no names)"
        )


def lint_apt(ins, problem):
    """apt-get in one RUN: update and install together (a cached `update` layer installs stale
    versions), no recommended extras, and the package lists removed in the same layer."""
    commands = [c.strip() for c in re.split(r"&&|;|\|\|", ins.args)]
    if any(re.match(r"(sudo\s+)?apt\s", c) for c in commands):
        problem(ins.line, "apt", "use apt-get (apt's command line is not stable for scripts)")
    installs = [c for c in commands if re.search(r"\bapt-get\b.*\binstall\b", c)]
    for command in installs:
        if not re.search(r"\s(-[a-z]*y[a-z]*|--yes|--assume-yes)\b", command):
            problem(ins.line, "apt", "apt-get install without -y waits for an answer")
        if "--no-install-recommends" not in command:
            problem(ins.line, "apt", "apt-get install without --no-install-recommends")
    if installs:
        if not any(re.search(r"\bapt-get\b.*\bupdate\b", c) for c in commands):
            problem(ins.line, "apt", "apt-get install without apt-get update in the same RUN")
        if not re.search(r"rm\s+-[a-z]*r[a-z]*f?[a-z]*\s+/var/lib/apt/lists/\*", ins.args):
            problem(ins.line, "apt", "remove /var/lib/apt/lists/* in the same RUN as the install")
    if any(re.search(r"\bapt-get\b.*\b(dist-)?upgrade\b", c) for c in commands):
        problem(ins.line, "apt", "apt-get upgrade in an image: update the base image tag instead")


def profile_dir(profile, cargo):
    """The directory under target/ that `--profile <profile>` writes to, or None if Cargo.toml
    defines no such profile."""
    if profile in BUILTIN_PROFILE_DIRS:
        return BUILTIN_PROFILE_DIRS[profile]
    return profile if profile in cargo.get("profile", {}) else None


def lint_cargo_build(stages, root, problem):
    """The `cargo build` of a build stage: a profile Cargo.toml has, the locked dependencies CI
    tested, a [[bin]] that exists, and a COPY --from in the final stage that takes the binary
    from where that profile puts it, to the path ENTRYPOINT runs."""
    cargo = tomllib.loads((root / "Cargo.toml").read_text())
    bins = {b["name"] for b in cargo.get("bin", [])} or {cargo["package"]["name"]}
    outputs = {}  # stage name -> (line, path of the built binary)
    for stage in stages[:-1]:
        workdir, target_dir = "/", None
        for ins in stage.instructions:
            if ins.keyword == "WORKDIR":
                workdir = (
                    ins.args if ins.args.startswith("/") else f"{workdir.rstrip('/')}/{ins.args}"
                )
            if ins.keyword == "ENV" and "CARGO_TARGET_DIR" in ins.args:
                target_dir = re.search(r"CARGO_TARGET_DIR[= ]\s*(\S+)", ins.args).group(1)
            if ins.keyword != "RUN" or not re.search(r"\bcargo\s+build\b", ins.args):
                continue
            words = shlex.split(
                re.split(r"\bcargo\s+build\b", ins.args, maxsplit=1)[1].split("&&")[0]
            )
            profile = "release" if "--release" in words else "dev"
            if "--profile" in words:
                profile = words[words.index("--profile") + 1]
            directory = profile_dir(profile, cargo)
            if directory is None:
                problem(ins.line, "cargo-profile", f"profile `{profile}` is not in Cargo.toml")
                continue
            if "--locked" not in words:
                problem(
                    ins.line,
                    "cargo-locked",
                    "without --locked, cargo may build other versions than Cargo.lock's (CI's)",
                )
            # Without --bin, cargo builds every binary: "the" binary only if there is one.
            binary = (
                words[words.index("--bin") + 1]
                if "--bin" in words
                else next(iter(bins)) if len(bins) == 1 else None
            )
            if binary not in bins:
                problem(ins.line, "cargo-bin", f"--bin {binary}: Cargo.toml has {sorted(bins)}")
                continue
            target = target_dir or f"{workdir.rstrip('/')}/target"
            if stage.name:
                outputs[stage.name] = (ins.line, f"{target}/{directory}/{binary}")

    final = stages[-1]
    copied = {}  # destination in the final stage -> source stage
    for ins in final.all("COPY"):
        options, paths = flags(ins.args)
        source_stage = options.get("from")
        if source_stage not in outputs or len(paths) != 2:
            continue
        line, built = outputs[source_stage]
        if paths[0] != built:
            problem(
                ins.line,
                "binary-path",
                f"copies {paths[0]}, but the build on line {line} writes {built}",
            )
        copied[paths[1]] = source_stage
    if outputs and not copied:
        problem(
            final.line,
            "binary-path",
            f"the final stage copies no built binary ({', '.join(p for _, p in outputs.values())})",
        )
    for ins in final.all("ENTRYPOINT"):
        try:
            program = json.loads(ins.args)[0]
        except (json.JSONDecodeError, IndexError, KeyError, TypeError):
            continue  # reported by exec-form
        if copied and program not in copied:
            problem(
                ins.line,
                "entrypoint",
                f"runs {program}, which no COPY --from puts there ({', '.join(copied)})",
            )


def lint_expose(final, comments, root, problem):
    """EXPOSE the ports that examples/portcullis.toml listens on (the configuration the header's
    `docker run` mounts), and publish exactly those in that `docker run`. A loopback listener
    (the admin one) is not reachable from outside a container and is not exposed."""
    config = tomllib.loads((root / "examples" / "portcullis.toml").read_text())
    wanted = set()
    for listener in config.get("listeners", []):
        host, _, port = listener["bind"].rpartition(":")
        if not host.strip("[]").startswith(("127.", "::1", "localhost")):
            wanted.add(int(port))
    exposed, line = set(), final.line
    for ins in final.all("EXPOSE"):
        line = ins.line
        for port in ins.args.split():
            number = port.partition("/")[0]
            if number.isdigit():
                exposed.add(int(number))
            else:
                problem(ins.line, "expose", f"EXPOSE {port}: not a port number")
    if exposed != wanted:
        problem(
            line,
            "expose",
            f"EXPOSE {sorted(exposed)} but examples/portcullis.toml listens on {sorted(wanted)}",
        )
    for number, comment in comments:
        if "docker run" not in comment:
            continue
        published = {int(m) for m in re.findall(r"-p\s+(?:[\d.]+:)?\d+:(\d+)", comment)}
        if published != exposed:
            problem(
                number,
                "expose",
                f"`docker run` publishes {sorted(published)}, the image exposes {sorted(exposed)}",
            )


def lint_dockerignore(stages, root, problem):
    """`COPY . .` sends the whole context: without a .dockerignore that is target/ (gigabytes of
    build output) and .git; with one, it must still send what cargo needs."""
    copies_all = [
        ins.line
        for stage in stages
        for ins in stage.all("COPY")
        if flags(ins.args)[1][:1] in (["."], ["./"]) and "from" not in flags(ins.args)[0]
    ]
    if not copies_all:
        return
    line = copies_all[0]
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        problem(
            line,
            "dockerignore",
            "COPY . . without a .dockerignore sends target/ and .git to the builder",
        )
        return
    lines = [p.strip() for p in ignore.read_text().splitlines()]
    patterns = [p.removeprefix("**/").strip("/") for p in lines if p and not p.startswith("#")]

    def ignored(path):
        return any(fnmatch.fnmatch(path, p) for p in patterns if not p.startswith("!"))

    for path in ("target", ".git"):
        if not ignored(path):
            problem(line, "dockerignore", f".dockerignore does not exclude {path}/")
    for path in ("Cargo.toml", "Cargo.lock", "src", "benches", "rulesets", "geoip"):
        if ignored(path):
            problem(line, "dockerignore", f".dockerignore excludes {path}, which the build needs")


def main():
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dockerfile", nargs="?", type=Path, default=here / "Dockerfile")
    parser.add_argument("--root", type=Path, default=here.parent, help="the build context")
    args = parser.parse_args()
    dockerfile, root = args.dockerfile.resolve(), args.root.resolve()
    problems = lint(dockerfile, root)
    for _, text in sorted(problems):
        print(text)
    if problems:
        sys.exit(1)
    print(f"{os.path.relpath(dockerfile)}: ok")


if __name__ == "__main__":
    main()
