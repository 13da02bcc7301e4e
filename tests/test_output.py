"""The plain console prints exactly what rich would print without styles (pipelines see it);
emoji codes such as `:b:` stay text on both (a log line is not markup)."""

from __future__ import annotations

import random

from rich.markup import escape, render  # noqa: TID251 - the reference the plain console must match

from mlctl.output import _escape, _strip_markup

ALPHABET = "ab /\\[]=#@:-1"
TEMPLATES = ("{}", "[dim]{}[/]", "[bold red]error:[/] {}", "[green]✓[/] {} [dim](1.0s)[/]", "  [dim]{}[/]")


def test_escape_and_strip_agree_with_rich_on_random_text() -> None:
    rng = random.Random(20261201)
    texts = ["", "back\\", "a[1, 2]", "[/]", "\\[dim]", "path/[a-z]"]
    texts += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    for text in texts:
        assert _escape(text) == escape(text), text
        for template in TEMPLATES:
            markup = template.format(escape(text))
            assert _strip_markup(markup) == render(markup, emoji=False).plain, markup
