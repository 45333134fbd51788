"""llama-server's argument list, read from the pinned build's own `common/arg.cpp`.

llama.cpp has no parser we can run without building it (llama-cpp-python[server] takes 10-17 minutes to
compile here), but every flag is declared in one C++ file as
``add_opt(common_arg({names}, [{negations},] ["VALUE", ...] help, handler).set_examples({...}))``.
This module reads those declarations and checks an argv the way llama-server's parser does: exact names
only, the number of values the handler takes, integer values where the handler takes an int, and the
fixed choices a string handler compares against before it throws. It does not run the handlers, so a
file that does not exist or a value the server rejects later (at model load) is out of its reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Spellings llama.cpp's is_truthy / is_falsey / is_autoy accept (common/arg.cpp's helpers).
TRUTHY = {"on", "enabled", "true", "1"}
FALSEY = {"off", "disabled", "false", "0"}
AUTOY = {"auto", "-1"}


@dataclass
class Option:
    """One llama.cpp option: its names, how many values it takes and what they may be."""

    names: list[str]
    negations: list[str] = field(default_factory=list)
    kind: str = "flag"  # flag | bool | string | int | float | string2
    examples: set[str] = field(default_factory=lambda: {"LLAMA_EXAMPLE_COMMON"})
    excludes: set[str] = field(default_factory=set)
    env: str | None = None
    choices: set[str] | None = None
    ints_allowed: bool = False

    @property
    def arity(self) -> int:
        """How many values follow the option on the command line."""
        return {"flag": 0, "bool": 0, "string": 1, "int": 1, "float": 1, "string2": 2}[self.kind]

    def in_server(self) -> bool:
        """Whether llama-server offers it (its own example, or a common one it does not exclude)."""
        examples = self.examples
        wanted = "LLAMA_EXAMPLE_SERVER" in examples or "LLAMA_EXAMPLE_COMMON" in examples
        return wanted and "LLAMA_EXAMPLE_SERVER" not in self.excludes


def _balanced(text: str, start: int) -> int:
    """Index just after the parenthesis that closes the one at ``start``, skipping strings and comments."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "'":
            i += 3 if text[i + 1] != "\\" else 4
            continue
        elif text.startswith("//", i):
            i = text.index("\n", i)
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses in arg.cpp")


def _strings(block: str) -> list[str]:
    return re.findall(r'"((?:[^"\\]|\\.)*)"', block)


def _example_set(expr: str, named: dict[str, set[str]]) -> set[str]:
    expr = expr.strip()
    if expr.startswith("{"):
        return set(re.findall(r"LLAMA_EXAMPLE_\w+", expr))
    return named[expr]


def parse_arg_cpp(text: str) -> list[Option]:
    """Every option declared in ``arg.cpp``, in declaration order."""
    named = {
        m.group(1): set(re.findall(r"LLAMA_EXAMPLE_\w+", m.group(2)))
        for m in re.finditer(r"std::initializer_list<enum llama_example>\s+(\w+)\s*=\s*\{([^}]*)\}", text)
    }
    options = []
    for m in re.finditer(r"add_opt\(\s*common_arg\(", text):
        end = _balanced(text, m.start() + len("add_opt"))
        call = text[m.end() - 1 : end]
        inner_end = _balanced(call, 0)
        args_text, chained = call[:inner_end], call[inner_end:]
        groups = re.findall(r"\{\s*(\"[^{}]*?)\}", args_text[: args_text.find("[")])
        option = Option(names=_strings(groups[0]), negations=_strings(groups[1]) if len(groups) > 1 else [])
        lam = re.search(r"\[[^\]]*\]\s*\(([^)]*)\)\s*\{", args_text)
        params = [p.strip() for p in lam.group(1).split(",")][1:]
        body = args_text[lam.end() :]
        if not params:
            option.kind = "flag"
        elif len(params) == 2:
            option.kind = "string2"
        elif params[0].startswith("bool"):
            option.kind = "bool"
        elif params[0].startswith("int"):
            option.kind = "int"
        elif params[0].startswith("float"):
            option.kind = "float"
        else:
            option.kind = "string"
            literals = set(re.findall(r'\bvalue\s*==\s*"([^"]*)"', body))
            if "is_truthy(value)" in body and "throw" in body:
                option.choices = TRUTHY | FALSEY | (AUTOY if "is_autoy(value)" in body else set())
            elif literals and "std::stoi(value)" in body:
                option.choices, option.ints_allowed = literals, True
            elif literals and "throw" in body:
                option.choices = literals
        for which, expr in re.findall(r"\.set_(examples|excludes)\(([^)]*)\)", chained):
            setattr(option, "examples" if which == "examples" else "excludes", _example_set(expr, named))
        env = re.search(r'\.set_env\("([^"]+)"\)', chained)
        option.env = env.group(1) if env else None
        options.append(option)
    return options


def server_options(arg_cpp: Path) -> dict[str, Option]:
    """Option name (every spelling, negations too) -> option, for llama-server only."""
    table: dict[str, Option] = {}
    for option in parse_arg_cpp(arg_cpp.read_text()):
        if option.in_server():
            for name in option.names:
                table[name] = option
            for name in option.negations:
                table[name] = Option(names=[name], kind="flag", examples=option.examples)
    return table


def check_argv(options: dict[str, Option], argv: list[str]) -> list[str]:
    """Problems llama-server's parser would report for ``argv`` (what follows the binary); empty if none."""
    problems, i = [], 0
    while i < len(argv):
        name = argv[i]
        option = options.get(name)
        if option is None:
            problems.append(f"{name}: not a llama-server option of this build")
            i += 1
            continue
        values = argv[i + 1 : i + 1 + option.arity]
        if len(values) < option.arity:
            problems.append(f"{name}: expects {option.arity} value(s)")
        for value in values:
            if option.kind == "int" and not re.fullmatch(r"-?\d+", value):
                problems.append(f"{name}: {value!r} is not an integer")
            if option.kind == "float" and not re.fullmatch(r"-?\d+(\.\d*)?([eE]-?\d+)?", value):
                problems.append(f"{name}: {value!r} is not a number")
            integer_ok = option.ints_allowed and re.fullmatch(r"-?\d+", value)
            if option.choices is not None and value not in option.choices and not integer_ok:
                problems.append(f"{name}: {value!r} is not one of {sorted(option.choices)}")
        i += 1 + option.arity
    return problems
