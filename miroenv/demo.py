"""The bundled demo: a small snapshot on the history of computing, five tasks, and a scripted policy.

`build_demo(path)` writes `snapshots/demo/` (snapshot, full-text index, `tasks.jsonl`, `actions.jsonl`);
`demo_snapshot()` gives the bundled copy, or one built into a temporary folder removed afterwards. The texts
below were written for this project. The scripted policy writes MiroThinker-style MCP XML calls, hits a repeated query,
a page outside the snapshot and a malformed call on the way, computes one answer with `run_python_code` in a
sandbox, and answers through the summary turn.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from miroenv.protocol.base import Action
from miroenv.tasks import Task
from miroenv.testing.actions import create_sandbox_call, final_answer, python_call, scrape_call, search_call
from miroenv.testing.builder import SnapshotBuilder

DEMO_NAME = "demo-history-of-computing"
DEMO_CAPTURE_DATE = "2025-11-13"

WIKI = "https://en.wikipedia.org/wiki/"

PAGES: dict[str, tuple[str, str]] = {
    WIKI + "Ada_Lovelace": (
        "Ada Lovelace - Wikipedia",
        """# Ada Lovelace

Augusta Ada King, Countess of Lovelace (born Augusta Ada Byron; 10 December 1815 – 27 November 1852) was an
English mathematician and writer, chiefly known for her work on Charles Babbage's proposed mechanical
general-purpose computer, the Analytical Engine.

## Early life

Ada was the only legitimate child of the poet Lord Byron and the mathematician Anne Isabella Milbanke. She was
born in London. Her mother promoted her interest in mathematics and logic from an early age.

## The Analytical Engine notes

In 1842 and 1843 Lovelace translated an article on the Analytical Engine by the Italian engineer Luigi Menabrea
and added a long set of notes of her own. Note G describes an algorithm for the engine to compute Bernoulli
numbers. It is often described as the first published algorithm intended to be carried out by such a machine,
and Lovelace is therefore frequently called the first computer programmer.

## Legacy

The programming language Ada, developed for the United States Department of Defense, was named after her.
Ada Lovelace Day is celebrated each October to recognise women in science and technology.""",
    ),
    WIKI + "Charles_Babbage": (
        "Charles Babbage - Wikipedia",
        """# Charles Babbage

Charles Babbage (26 December 1791 – 18 October 1871) was an English polymath: a mathematician, philosopher,
inventor and mechanical engineer who originated the concept of a digital programmable computer.

## Calculating engines

Babbage began work on the Difference Engine in 1822, a machine designed to tabulate polynomial functions.
In 1837 he first described the Analytical Engine, a general-purpose design with an arithmetic unit (the mill),
memory (the store), conditional branching and loops, programmed with punched cards.

## Later life

Neither engine was completed in his lifetime. Babbage died in London in 1871. Parts of his unfinished
mechanisms are on display in the Science Museum in London.""",
    ),
    WIKI + "Analytical_Engine": (
        "Analytical Engine - Wikipedia",
        """# Analytical Engine

The Analytical Engine was a proposed mechanical general-purpose computer designed by Charles Babbage. It was
first described in 1837 as the successor to Babbage's Difference Engine.

## Design

The engine would have had an arithmetic logic unit, control flow in the form of conditional branching and
loops, and integrated memory, making it the first design for a general-purpose computer that could be
described in modern terms as Turing-complete. Programs and data were to be supplied on punched cards, a method
borrowed from the Jacquard loom.

## Programs

Ada Lovelace's notes of 1843 contain a program for the engine that computes Bernoulli numbers (Note G).
The engine itself was never built.""",
    ),
    WIKI + "Ada_(programming_language)": (
        "Ada (programming language) - Wikipedia",
        """# Ada (programming language)

Ada is a structured, statically typed, imperative and object-oriented high-level programming language. It was
designed by a team led by the French computer scientist Jean Ichbiah of CII Honeywell Bull under contract to the
United States Department of Defense (DoD) from 1977 to 1983.

## Naming

The language was named after Ada Lovelace (1815–1852), who has been credited as the first computer programmer.

## Standardization

The language was first standardized as a United States military standard, MIL-STD-1815, in 1980. The number
of the standard was chosen to honour the year of Ada Lovelace's birth. The revised language became an ANSI
standard in 1983 (ANSI/MIL-STD-1815A) and an ISO standard in 1987. Later revisions are known as Ada 95,
Ada 2005 and Ada 2012.""",
    ),
    WIKI + "ENIAC": (
        "ENIAC - Wikipedia",
        """# ENIAC

ENIAC (Electronic Numerical Integrator and Computer) was the first programmable, electronic, general-purpose
digital computer, completed in 1945.

## Development

ENIAC was designed by John Mauchly and J. Presper Eckert at the University of Pennsylvania's Moore School of
Electrical Engineering, funded by the United States Army to calculate artillery firing tables.

## Dedication

The machine was announced to the public and formally dedicated at the University of Pennsylvania on
15 February 1946. It contained about 17,468 vacuum tubes and weighed roughly 27 tonnes.

## Programmers

Its first programmers were six women: Kay McNulty, Betty Jennings, Betty Snyder, Marlyn Wescoff, Fran Bilas
and Ruth Lichterman.""",
    ),
    WIKI + "Grace_Hopper": (
        "Grace Hopper - Wikipedia",
        """# Grace Hopper

Grace Brewster Hopper (December 9, 1906 – January 1, 1992) was an American computer scientist, mathematician
and United States Navy rear admiral. She was a pioneer of computer programming.

## Harvard Mark I and the first bug

Hopper was one of the first programmers of the Harvard Mark I. In 1947 operators of the Harvard Mark II found a
moth stuck in a relay, taping it into the log book as the "first actual case of bug being found".

## Compilers

At Remington Rand she led the team that developed the A-0 compiler and later FLOW-MATIC, the first
English-like data processing language. FLOW-MATIC strongly influenced the design of COBOL.""",
    ),
    WIKI + "COBOL": (
        "COBOL - Wikipedia",
        """# COBOL

COBOL (Common Business-Oriented Language) is an English-like programming language designed for business use.

## History

COBOL was designed in 1959 by CODASYL, a committee of computer manufacturers, users and the US government.
Its design was based largely on FLOW-MATIC, the language created by Grace Hopper's team, together with IBM's
COMTRAN. The first specification was published in 1960.

## Use

COBOL remains in use in administrative, banking and government systems on mainframe computers.""",
    ),
    WIKI + "Alan_Turing": (
        "Alan Turing - Wikipedia",
        """# Alan Turing

Alan Mathison Turing (23 June 1912 – 7 June 1954) was an English mathematician, computer scientist and
logician, widely considered the father of theoretical computer science.

## Computability

In his 1936 paper "On Computable Numbers, with an Application to the Entscheidungsproblem" Turing introduced
the abstract machine now called the Turing machine.

## Artificial intelligence

His 1950 paper "Computing Machinery and Intelligence" proposed the imitation game, now known as the Turing test.

## Legacy

The ACM's highest award, the Turing Award, is named after him.""",
    ),
    WIKI + "Turing_Award": (
        "Turing Award - Wikipedia",
        """# Turing Award

The ACM A. M. Turing Award is an annual prize given by the Association for Computing Machinery (ACM) for
contributions of lasting and major technical importance to computer science. It is named after Alan Turing.

## History

The award was established in 1966. Its first recipient, in 1966, was Alan Perlis, for his influence in the
area of advanced programming techniques and compiler construction. Maurice Wilkes received it in 1967 and
Richard Hamming in 1968.""",
    ),
    WIKI + "Manchester_Baby": (
        "Manchester Baby - Wikipedia",
        """# Manchester Baby

The Manchester Baby, also called the Small-Scale Experimental Machine (SSEM), was the first electronic
stored-program computer.

## First program

It was built at the Victoria University of Manchester by Frederic C. Williams, Tom Kilburn and Geoff Tootill,
and ran its first program on 21 June 1948. The program, written by Kilburn, found the highest proper factor of
2^18 and ran for 52 minutes.""",
    ),
    WIKI + "Jacquard_machine": (
        "Jacquard machine - Wikipedia",
        """# Jacquard machine

The Jacquard machine is a device fitted to a loom that simplifies the weaving of complex patterns. It was
demonstrated by Joseph Marie Jacquard in 1804.

## Punched cards

The loom was controlled by a chain of punched cards, each card corresponding to one row of the design. Charles
Babbage planned to use the same kind of cards to program his Analytical Engine.""",
    ),
    WIKI + "Difference_engine": (
        "Difference engine - Wikipedia",
        """# Difference engine

A difference engine is an automatic mechanical calculator designed to tabulate polynomial functions.

## Babbage's engines

Charles Babbage began building his first difference engine in 1822 but never completed it. Between 1989 and
1991 the Science Museum in London built his Difference Engine No. 2 from his original drawings; it worked
as he intended. The printer for the machine was completed in 2000.""",
    ),
}


def _result(url: str, snippet: str, date: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"title": PAGES[url][0], "link": url, "snippet": snippet}
    if date:
        item["date"] = date
    return item


SEARCHES: dict[str, list[dict[str, Any]]] = {
    "first published algorithm Analytical Engine author": [
        _result(
            WIKI + "Ada_Lovelace",
            "Note G describes an algorithm for the engine to compute Bernoulli numbers ...",
        ),
        _result(
            WIKI + "Analytical_Engine", "Ada Lovelace's notes of 1843 contain a program for the engine ..."
        ),
        _result(
            WIKI + "Charles_Babbage",
            "In 1837 he first described the Analytical Engine, a general-purpose ...",
        ),
    ],
    "programming language named after Ada Lovelace military standard": [
        _result(
            WIKI + "Ada_(programming_language)",
            "The language was first standardized as a United States "
            "military standard, MIL-STD-1815, in 1980 ...",
        ),
        _result(
            WIKI + "Ada_Lovelace",
            "The programming language Ada, developed for the United States Department "
            "of Defense, was named after her.",
        ),
    ],
    "Charles Babbage birth date": [
        _result(
            WIKI + "Charles_Babbage",
            "Charles Babbage (26 December 1791 – 18 October 1871) was an English polymath ...",
        ),
        _result(
            WIKI + "Difference_engine",
            "Charles Babbage began building his first difference engine in 1822 ...",
        ),
    ],
    "ENIAC formally dedicated date": [
        _result(
            WIKI + "ENIAC",
            "The machine was announced to the public and formally dedicated at the University "
            "of Pennsylvania on 15 February 1946.",
            date="Feb 15, 1946",
        ),
    ],
    "Turing Award first recipient": [
        _result(
            WIKI + "Turing_Award",
            "The award was established in 1966. Its first recipient, in 1966, was Alan Perlis ...",
        ),
        _result(WIKI + "Alan_Turing", "The ACM's highest award, the Turing Award, is named after him."),
        {
            "title": "Turing Award winners dataset",
            "link": "https://huggingface.co/datasets/example/turing-award",
            "snippet": "A dataset listing every Turing Award laureate.",
        },
    ],
    "author of Computing Machinery and Intelligence": [
        _result(
            WIKI + "Alan_Turing",
            'His 1950 paper "Computing Machinery and Intelligence" proposed the imitation game ...',
        ),
    ],
    "Manchester Baby first program date": [
        _result(WIKI + "Manchester_Baby", "... and ran its first program on 21 June 1948."),
    ],
    "birth years of Ada Lovelace and Alan Turing": [
        _result(
            WIKI + "Ada_Lovelace",
            "Augusta Ada King, Countess of Lovelace (born Augusta Ada Byron; 10 December "
            "1815 – 27 November 1852) ...",
        ),
        _result(
            WIKI + "Alan_Turing",
            "Alan Mathison Turing (23 June 1912 – 7 June 1954) was an English mathematician ...",
        ),
    ],
    "language designed 1959 influenced by FLOW-MATIC": [
        _result(WIKI + "COBOL", "COBOL was designed in 1959 by CODASYL ... based largely on FLOW-MATIC ..."),
        _result(WIKI + "Grace_Hopper", "FLOW-MATIC strongly influenced the design of COBOL."),
    ],
}

TASKS: list[Task] = [
    Task(
        task_id="ada-standard",
        question=(
            "The programming language named after the author of the first published algorithm for Charles "
            "Babbage's Analytical Engine was first standardized as a US military standard. What was that "
            "standard's designation?"
        ),
        answer="MIL-STD-1815",
    ),
    Task(
        task_id="babbage-eniac-gap",
        question=(
            "How many years after Charles Babbage's birth year was ENIAC formally dedicated? Answer with a number."
        ),
        answer="155",
    ),
    Task(
        task_id="turing-award-first",
        question=(
            "Who was the first recipient of the award named after the author of 'Computing Machinery and "
            "Intelligence'?"
        ),
        answer="Alan Perlis",
    ),
    Task(
        task_id="birth-years-product",
        question=(
            "Multiply Ada Lovelace's birth year by Alan Turing's birth year and give the product, computed exactly."
        ),
        answer="3470280",
    ),
    Task(
        task_id="baby-first-program",
        question="On what date did the Manchester Baby run its first program? Answer as YYYY-MM-DD.",
        answer="1948-06-21",
    ),
]


ACTIONS: dict[str, list[Action]] = {
    "ada-standard": [
        search_call(
            "first published algorithm Analytical Engine author",
            thought="First find who published the first algorithm for the Analytical Engine.",
        ),
        search_call(
            "programming language named after Ada Lovelace military standard",
            thought="It was Ada Lovelace. Now the language named after her and its military standard.",
        ),
        scrape_call(
            WIKI + "Ada_(programming_language)",
            "first military standard designation and year",
            thought="Read the Ada language page to confirm the standard's designation.",
        ),
        *final_answer("MIL-STD-1815", "Ada was first standardized as MIL-STD-1815 in 1980."),
    ],
    "babbage-eniac-gap": [
        search_call("Charles Babbage birth date", thought="I need Babbage's birth year."),
        search_call(
            "Charles Babbage birth date",
            thought="Babbage was born in 1791. Searching the same thing again by mistake.",
        ),
        search_call(
            "ENIAC formally dedicated date", thought="The repeat was refused. Now the ENIAC dedication date."
        ),
        scrape_call(
            "https://www.example.org/eniac-history",
            "dedication date",
            thought="Let me check a page that may not be captured.",
        ),
        scrape_call(
            WIKI + "ENIAC",
            "date ENIAC was formally dedicated",
            thought="That page is not available; the ENIAC article has it.",
        ),
        *final_answer("155", "ENIAC was dedicated on 15 February 1946; 1946 - 1791 = 155."),
    ],
    "turing-award-first": [
        search_call(
            "author of Computing Machinery and Intelligence",
            thought="Who wrote 'Computing Machinery and Intelligence'?",
        ),
        "<think>\nAlan Turing. Now the award's first recipient.\n</think>\n\n<use_mcp_tool>\n<server_name>"
        "search_and_scrape_webpage</server_name>\n<tool_name>google_search</tool_name>\n<arguments>\n"
        "{'q': 'Turing Award first recipient',}\n</arguments>\n</use_mcp_tool>",
        scrape_call(
            WIKI + "Turing_Award",
            "first recipient of the Turing Award",
            thought="The search says Alan Perlis; confirm on the award page.",
        ),
        *final_answer("Alan Perlis", "The first Turing Award, in 1966, went to Alan Perlis."),
    ],
    "birth-years-product": [
        search_call("birth years of Ada Lovelace and Alan Turing", thought="Find both birth years first."),
        create_sandbox_call(
            thought="Ada Lovelace was born in 1815 and Alan Turing in 1912. I will compute the product in Python."
        ),
        python_call(
            "ada, turing = 1815, 1912\nada * turing",
            task_id="birth-years-product",
            thought="Run the multiplication in the sandbox.",
        ),
        *final_answer("3470280", "1815 * 1912 = 3470280, as computed in the sandbox."),
    ],
    "baby-first-program": [
        search_call(
            "Manchester Baby first program date", thought="Search for the Manchester Baby's first program."
        ),
        "<think>\nI will open the page.\n</think>\n\n<use_mcp_tool>\n<server_name>jina_scrape_llm_summary"
        '</server_name>\n<arguments>\n{"url": "' + WIKI + 'Manchester_Baby"}\n</arguments>\n</use_mcp_tool>',
        scrape_call(
            WIKI + "Manchester_Baby",
            "date of the first program run",
            thought="I forgot the tool name; try again properly.",
        ),
        *final_answer("1948-06-21", "The Baby ran its first program on 21 June 1948."),
    ],
}


def build_demo(path: str | Path) -> Path:
    """Write the demo snapshot, `tasks.jsonl` and `actions.jsonl` into `path` (replacing what is there)."""
    builder = SnapshotBuilder(
        DEMO_NAME,
        capture_date=DEMO_CAPTURE_DATE,
        description="A dozen pages on the history of computing, written for the miroenv demo.",
    )
    for url, (title, text) in PAGES.items():
        builder.page(url, text, title=title, content_type="text/markdown")
    for query, organic in SEARCHES.items():
        builder.search(query, organic)
    for task in TASKS:
        builder.task(task, actions=ACTIONS[task.task_id])
    return builder.build(path)


BUNDLED_DEMO = Path("snapshots/demo")
"""Where `make demo` (run from the repository root) finds the committed demo snapshot."""


@contextmanager
def demo_snapshot(path: Path | None = None) -> Iterator[Path]:
    """`path`, else the bundled `snapshots/demo`, else a fresh build in a temporary folder deleted on exit."""
    if path is not None:
        yield path
    elif (BUNDLED_DEMO / "manifest.json").is_file():
        yield BUNDLED_DEMO
    else:
        with tempfile.TemporaryDirectory(prefix="miroenv-demo-") as scratch:
            yield build_demo(Path(scratch))
