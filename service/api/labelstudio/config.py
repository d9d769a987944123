"""Reading a Label Studio labeling config (``<View>…</View>``): which ``<Text>`` holds the
text (``value="$field"``: the task's ``data[field]``), the ``<Labels>`` control bound to it,
and a ``<Choices>`` control bound to the same text where there is one.

The XML comes from the network, so it is parsed with the standard library's parser only
after refusing any document type declaration: without a DTD there are no entity declarations,
so neither entity expansion (billion laughs) nor external entities can happen; an undefined
``&name;`` is a parse error. That is defusedxml's protection for this one use, with no new
dependency (Label Studio itself parses configs with ``forbid_dtd=True``). The size is
bounded before parsing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from tagserve.service.errors import LimitExceeded

MAX_CONFIG_CHARS = 200_000
# "<!" opens a comment, a CDATA section, or a declaration; only the first two are harmless.
_DECLARATION = re.compile(r"<!(?!--|\[CDATA\[)")


@dataclass(frozen=True)
class Option:
    """A ``<Label>`` or ``<Choice>``: ``name`` is what results carry (Label Studio writes
    ``alias`` when there is one, else ``value``); ``predicted`` lists the model labels it
    stands for (its ``predicted_values`` attribute, comma-separated), empty when none."""

    value: str
    name: str
    predicted: tuple[str, ...]


@dataclass(frozen=True)
class Control:
    """A ``<Labels>`` or ``<Choices>`` control bound to the text; ``model``: its optional
    ``model="NAME"`` attribute, which picks the tagserve model."""

    tag: str
    name: str
    options: tuple[Option, ...]
    model: str | None


@dataclass(frozen=True)
class LabelingConfig:
    """What predicting for a config needs: the text object's name (results' ``to_name``), the
    task field that holds the text, and the controls to fill."""

    to_name: str
    field: str
    labels: Control | None
    choices: Control | None

    def controls(self) -> list[Control]:
        return [c for c in (self.labels, self.choices) if c is not None]


def read_config(xml: str, where: str) -> LabelingConfig:
    """The usable parts of a labeling config, or :class:`LimitExceeded` (422) naming ``where``
    (the request field) and what is wrong or missing."""
    root = _parse(xml, where)
    texts = {}
    for element in root.iter():
        if _tag(element) == "text":
            value = element.get("value", "")
            name = element.get("name")
            if name and value.startswith("$") and len(value) > 1:
                texts[name] = value[1:]
    labels = _first_control(root, "labels", "label", texts, where)
    bound_to = labels[0] if labels else None
    choices = _first_control(root, "choices", "choice", texts, where, bound_to)
    if labels is None and choices is None:
        found = sorted({_tag(e) for e in root.iter()} & {"labels", "choices", "text"})
        raise LimitExceeded(
            where,
            "no <Labels> or <Choices> control bound (toName) to a <Text> object whose value "
            f'is a task field ("$text"); found: {", ".join(found) or "none of them"}',
        )
    to_name = bound_to or (choices[0] if choices else "")
    return LabelingConfig(
        to_name,
        texts[to_name],
        labels[1] if labels else None,
        choices[1] if choices else None,
    )


def _parse(xml: str, where: str) -> ET.Element:
    if len(xml) > MAX_CONFIG_CHARS:
        raise LimitExceeded(
            where, f"{len(xml)} characters exceed the limit of {MAX_CONFIG_CHARS} for a config"
        )
    declaration = _DECLARATION.search(xml)
    if declaration is not None:
        raise LimitExceeded(
            where,
            f"a declaration ({xml[declaration.start() : declaration.start() + 10]!r}) at "
            f"offset {declaration.start()}: DTDs and entity declarations are not accepted",
        )
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise LimitExceeded(where, f"not well-formed XML: {error}") from None
    except ValueError as error:  # e.g. an encoding declaration Python cannot apply to text
        raise LimitExceeded(where, f"not readable XML: {error}") from None
    if _tag(root) != "view":
        raise LimitExceeded(where, f"the root element is <{root.tag}>, expected <View>")
    return root


def _first_control(
    root: ET.Element,
    tag: str,
    option_tag: str,
    texts: dict[str, str],
    where: str,
    bound_to: str | None = None,
) -> tuple[str, Control] | None:
    """The first control of this kind bound to one of ``texts`` (to ``bound_to`` when given:
    choices go with the labels' text), with its options; ``perRegion`` choices (a class per
    span, not per text) and controls without static options are skipped."""
    for element in root.iter():
        if _tag(element) != tag or element.get("perRegion", "").lower() == "true":
            continue
        targets = [t.strip() for t in element.get("toName", "").split(",")]
        target = next((t for t in targets if t in texts), None)
        if target is None or (bound_to is not None and target != bound_to):
            continue
        name = element.get("name") or ""
        options = tuple(_option(o, name, where) for o in element.iter() if _tag(o) == option_tag)
        if name and options:
            return target, Control(tag, name, options, element.get("model") or None)
    return None


def _option(element: ET.Element, control: str, where: str) -> Option:
    value = element.get("value")
    if not value:
        raise LimitExceeded(where, f"a <{element.tag}> without a value in the control {control!r}")
    predicted = tuple(
        p.strip() for p in element.get("predicted_values", "").split(",") if p.strip()
    )
    return Option(value, element.get("alias") or value, predicted)


def _tag(element: ET.Element) -> str:
    """Label Studio reads tag names case-insensitively (``<Labels>`` and ``<labels>``)."""
    return element.tag.lower() if isinstance(element.tag, str) else ""
