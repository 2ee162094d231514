"""One sandboxed Jinja2 environment for every text, `set` value and `if` condition.

Dialog authors are trusted less than code (marketers edit texts), so templates run in Jinja's immutable
sandbox: no private attributes, no mutating the context. Attribute names starting with `_` are also
rejected at load, so an author hears about `{{ ''.__class__ }}` from the loader instead of a customer
getting an error message at run time. Customer input only ever fills variables; it is never compiled.
"""

from __future__ import annotations

from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.dialogue.errors import Where


def _blank_none(value: Any) -> Any:
    """`{{ contact.name }}` for a contact without a name renders as nothing, not "None"."""
    return "" if value is None else value


ENV = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined,  # `contact.attributes.city` on a contact without one is just empty
    finalize=_blank_none,
    autoescape=False,  # messengers get plain text
    trim_blocks=True,
    lstrip_blocks=True,
)


def compile_template(source: str, where: Where, what: str) -> Template:
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise where.error(f"template error in {what}: {exc.message}") from exc
    _reject_private(tree, where, what)
    return ENV.from_string(tree)


def reads_nothing(source: str) -> bool:
    """Whether a template (already compiled, so it parses) names no variable: it renders the same words
    for everyone, which the history then stores once (bot.context.phrases)."""
    return not meta.find_undeclared_variables(ENV.parse(source))


def compile_condition(source: str, where: Where) -> TemplateExpression:
    what = f"condition '{source}'"
    try:
        expression = ENV.compile_expression(source)
        tree = ENV.parse(f"{{{{ {source} }}}}")
    except TemplateSyntaxError as exc:
        raise where.error(f"template error in {what}: {exc.message}") from exc
    _reject_private(tree, where, what)
    return expression


def _reject_private(tree: nodes.Template, where: Where, what: str) -> None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = _accessed_name(node)
        if isinstance(name, str) and name.startswith("_"):
            raise where.error(f"unsafe attribute '{name}' in {what}")


def _accessed_name(node: nodes.Node) -> object:
    """The attribute a `.name`, `['name']` or `|attr('name')` reads, when it is spelled out."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem):
        arg = node.arg
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        arg = node.args[0]
    else:
        return None
    return arg.value if isinstance(arg, nodes.Const) else None
