"""Prompt words of the toy world: parse_prompt(text) -> (theme | None, motion), random_caption().

Pure Python (no torch): themes and motions match world.THEMES and world.MOTIONS. Matching is by
regex on word boundaries, any case; the theme named first in the text wins, and a direction beats a
"still" word. random_caption() draws free-form captions that parse back to their theme and motion.
"""

from __future__ import annotations

import random
import re


def _options(text: str) -> tuple[str, ...]:
    """'a|b c|d' -> ('a', 'b c', 'd'): keeps long word lists compact and diffable."""
    return tuple(part.strip() for part in text.split("|"))


MOTIONS = ("left", "right", "up", "down", "still", "default")

THEME_WORDS: dict[str, tuple[str, ...]] = {
    "snow": _options("snow|snowy|snowfield|winter|wintry|ice|icy|frozen|frost|frosty|blizzard|tundra"),
    "ocean": _options("ocean|oceans|sea|seas|water|waters|wave|waves|underwater|seascape|reef"),
    "desert": _options("desert|deserts|dune|dunes|sand|sands|sandy|arid|sahara"),
    "meadow": _options("meadow|meadows|grass|grassy|grassland|grasslands|lawn|pasture|prairie"),
    "lava": _options("lava|volcanic|volcano|volcanoes|magma|molten"),
    "night city": _options(
        "night city|city at night|city lights|city|cities|cityscape|neon|downtown|skyline|metropolis"
    ),
    "forest": _options("forest|forests|woods|woodland|woodlands|jungle|rainforest"),
    "autumn": _options("autumn|autumnal|fall foliage|foliage|fall leaves"),
    "mars": _options("mars|martian|red planet"),
}

_THEME_PATTERNS = {
    theme: re.compile(r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words) + r")\b", re.I)
    for theme, words in THEME_WORDS.items()
}
_VERB = (
    r"(?:pan|pans|panning|panned|mov(?:e|es|ing|ed)|track(?:s|ing|ed)?|slid(?:e|es|ing)|drift(?:s|ing|ed)?|"
    r"scroll(?:s|ing|ed)?|travel(?:s|ing|ling|ed|led)?|glid(?:e|es|ing)|fl(?:y|ies|ying)|head(?:s|ing|ed)?|"
    r"tilt(?:s|ing|ed)?|truck(?:s|ing)?|sweep(?:s|ing)?|shift(?:s|ing)?)"
)
_DIRECTION_PATTERNS = (  # each captures the direction word as group 1
    re.compile(rf"\b{_VERB}(?:\s+\w+ly)?(?:\s+(?:to|towards?)(?:\s+the)?)?\s+(left|right|up|down)\b", re.I),
    re.compile(r"\b(left|right|up|down)wards?\b", re.I),
    re.compile(
        r"\bfrom\s+(?:the\s+)?(?:left|right|top|bottom)\s+to\s+(?:the\s+)?(left|right|top|bottom)\b", re.I
    ),
)
_STILL_PATTERN = re.compile(
    r"\b(?:still|static|stationary|motionless|unmoving|immobile|locked[\s-]+off|fixed\s+camera|tripod|"
    r"no\s+camera\s+(?:motion|movement)|not\s+moving|(?:does\s+not|doesn'?t)\s+move|holds?\s+steady)\b",
    re.I,
)
_EDGE_TO_MOTION = {"top": "up", "bottom": "down"}


def parse_prompt(prompt: str) -> tuple[str | None, str]:
    """(theme or None, motion) named by free text; motion is "default" when none is named."""
    themes = [
        (m.start(), i, t) for i, (t, p) in enumerate(_THEME_PATTERNS.items()) if (m := p.search(prompt))
    ]
    theme = min(themes)[2] if themes else None
    directions = [(m.start(), m.group(1).lower()) for p in _DIRECTION_PATTERNS if (m := p.search(prompt))]
    if directions:
        word = min(directions)[1]
        return theme, _EDGE_TO_MOTION.get(word, word)
    return theme, "still" if _STILL_PATTERN.search(prompt) else "default"


PLACES: dict[str, tuple[str, ...]] = {
    "snow": _options(
        "snowy field|snow-covered plain|winter landscape|icy tundra|frozen lake|field of snow|snowfield|"
        "wintry hills|ice sheet"
    ),
    "ocean": _options(
        "open ocean|calm sea|rolling waves|deep blue water|underwater reef|sea surface|ocean waves|"
        "choppy waters"
    ),
    "desert": _options(
        "sandy desert|rolling dunes|desert plain|sand dunes|arid desert|endless sand|dune field"
    ),
    "meadow": _options(
        "green meadow|grassy field|field of grass|lawn|wide meadow|grassland|flower meadow|pasture"
    ),
    "lava": _options(
        "lava field|volcanic plain|river of magma|molten lava flow|volcano slope|lava lake|volcanic crater"
    ),
    "night city": _options(
        "city at night|neon city|night city|city lights|downtown at night|glowing cityscape|neon-lit streets|"
        "skyline at night"
    ),
    "forest": _options("dense forest|dark woods|pine forest|woodland floor|jungle canopy|forest clearing"),
    "autumn": _options("autumn park|autumn leaves|fall foliage|carpet of autumn leaves|autumnal garden"),
    "mars": _options(
        "surface of mars|martian plain|red planet|martian crater|mars landscape|dusty martian ground"
    ),
}
# Distractors: none holds a theme word, a motion verb followed by a direction, or a "still" word.
ADJECTIVES = _options(
    "beautiful|quiet|vast|peaceful|empty|endless|serene|colorful|detailed|misty|bright|lonely|wide|ancient|"
    "mysterious|gloomy|sunny|windswept|dreamy|vivid|calm"
)
TIMES = _options(
    "at dawn|at noon|at sunset|at dusk|in the morning|in the afternoon|at night|under a cloudy sky|"
    "on a clear day|in golden hour light|under a starry sky"
)
STYLES = _options(
    "cinematic|4k|8k|photo of|a photo of|aerial view of|top-down view of|drone footage of|video of|"
    "highly detailed|digital art|pixel art|hd|wide shot of"
)
STYLE_TAGS = _options(
    "cinematic|4k|hd|highly detailed|digital art|pixel art|ultra realistic|trending on artstation|wide shot|"
    "film grain|soft lighting"
)
_TURN_PHRASES = _options(
    "the camera pans {d}|camera pans {d}|panning {d}|moving {d}|slow pan {d}|camera tracks {d}|a {d}ward pan|"
    "the camera moves slowly {d}|camera drifting {d}|scrolling {d}|the view glides {d}|pan {d}|"
    "the camera is panning {d}"
)
_SIDE_PHRASES = _options(
    "camera pans to the {d}|the view slides to the {d}|the camera moves gently to the {d}"
)
_STILL_PHRASES = _options(
    "the camera holds still|static camera|still camera|the camera is stationary|locked-off shot|"
    "the camera does not move|motionless camera|fixed camera|camera stays still|static shot|"
    "no camera movement"
)
_MOTION_TEMPLATES = _options(
    "{place}, {motion}|{adj} {place}, {motion}|{style} {adj} {place} {time}, {motion}|"
    "{motion}: {adj} {place} {time}|{motion} over the {adj} {place}|{motion} across the {place} {time}|"
    "{style} {place}. {motion}.|{adj} {place} {time}; {motion}|{style}: {place} {time}, {motion}, {adj} mood|"
    "{place} {time} - {motion}|{motion}, revealing the {adj} {place}|the {adj} {place} {time}, {motion}|"
    "{style} the {adj} {place}, {motion}, {tag}|{adj}, {adj2} {place}, {motion}|"
    "{motion} while the {place} stretches away {time}|{place}. {motion}. {tag}|"
    "looking at the {adj} {place} {time} - {motion}|{motion} above the {place}|"
    "{style} {place}, {motion}, {time}|{adj} {place} seen from above, {motion}|"
    "{motion}. {style} {place} {time}.|{adj} {place} {time}, {tag}, {motion}|"
    "scene: {place}; camera: {motion}|{place} ({motion})"
)
_PLAIN_TEMPLATES = _options(
    "{place}|{adj} {place}|{style} {adj} {place} {time}|{style}: {place} {time}|{adj}, {adj2} {place}|"
    "{place} {time}|the {adj} {place} {time}, {tag}|{style} the {adj} {place}|{place} seen from above|"
    "{place}. {tag}|scene: {place}|{adj} {place} {time}, {adj2} mood"
)


def _motion_phrase(rng: random.Random, motion: str) -> str:
    if motion == "still":
        return rng.choice(_STILL_PHRASES)
    phrases = _TURN_PHRASES + (_SIDE_PHRASES if motion in ("left", "right") else ())
    return rng.choice(phrases).format(d=motion)


def random_caption(rng: random.Random, theme: str, motion: str) -> str:
    """A free-form caption naming `theme` by a synonym; motion "default" names no motion."""
    if theme not in PLACES:
        raise ValueError(f"unknown theme {theme!r}; expected one of {tuple(PLACES)}")
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")
    templates = _PLAIN_TEMPLATES if motion == "default" else _MOTION_TEMPLATES
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    caption = rng.choice(templates).format(
        place=rng.choice(PLACES[theme]),
        adj=adj,
        adj2=adj2,
        time=rng.choice(TIMES),
        style=rng.choice(STYLES),
        tag=rng.choice(STYLE_TAGS),
        motion=_motion_phrase(rng, motion) if motion != "default" else "",
    )
    case = rng.random()
    if case < 0.4:
        return caption[0].upper() + caption[1:]
    return caption.upper() if case < 0.45 else caption
