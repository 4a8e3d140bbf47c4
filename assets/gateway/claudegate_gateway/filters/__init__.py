"""Content filters: secret and personal-data detectors and operator regex rules, both directions.

The proxy calls ``FilterPolicy.apply`` on every parsed Messages request
body before it goes upstream (the request rules), and runs the response
rules over what the model answers (:mod:`.response` for whole messages and
the stream window, :mod:`.sse` for event streams). Modules by concern:
``normalise`` (Unicode), ``matchers`` / ``detectors`` / ``patterns`` (what a
rule looks for), ``regex_safety`` (load-time checks of operator regexes),
``walker`` (the strings of a request), ``scan`` (pieces, joins, redaction),
``policy`` (rules from config), ``clients`` (per-client overrides),
``results`` (verdicts). Standard library only besides the gateway's config
and error helpers.

Config (a list under ``filters:`` in the gateway YAML)::

    filters:
      - name: secrets              # used in audit verdicts and [REDACTED:<name>]
        detectors: [all]           # or any of: anthropic_key, openai_key,
                                   # aws_access_key, aws_secret_key, github_token,
                                   # private_key, card_number; opt-in PII (never
                                   # in "all"): email, phone
        direction: both            # request (default) | response | both
        action: redact             # block (default) | redact | log
      - name: no-project-x
        pattern: 'project\\s{0,3}x'  # Python regex, case-insensitive; shape-checked at load
        action: block
        status: 403                # 400 invalid_request_error (default) | 403 permission_error

Each rule has a ``name`` and exactly one of ``detectors`` / ``pattern``.
``status`` is only allowed with ``action: block``. Names are unique,
1-64 characters of ``A-Z a-z 0-9 _ . -``. ``log`` records the verdict and
changes nothing. The rest of this docstring is about requests; the gateway
README lists what is and is not scanned in both directions.

Absent vs empty: :meth:`FilterPolicy.from_config` builds exactly the rules it
is given, so ``from_config([])`` is a policy with NO rules (``filters: []``
written explicitly switches filtering off). When the ``filters`` key is absent
from the YAML the gateway uses :meth:`FilterPolicy.default` instead: one rule
``secrets`` with every detector (card numbers included) and action ``block``.

What is inspected (in an Anthropic Messages body): every field. The gateway
README has the table of fields and what a redact rule does to each; in short:

* ``system`` and every ``messages[].content`` (a string, blocks, or one block
  where a list belongs); ``text`` blocks and their citations; tool inputs
  walked fully (every string, dict key, and integers of 13-20 digits);
  ``tool_result`` content; ``document`` sources (text, content, base64
  ``text/plain`` decoded), titles, contexts and ``url`` sources; string
  fields of block types this module does not know;
* ``stop_sequences``, ``metadata.user_id``, tool descriptions and the
  ``description`` / ``title`` prose of an ``input_schema``, every other field
  of a tool definition, and every request field not read by name (walked
  whole, fail closed): redacted in place;
* *fixed* fields, which cannot be rewritten without breaking the request or
  what it means: ``model``, ``tool_choice``, tool names (definitions and
  ``tool_use`` blocks), the rest of an ``input_schema`` (property names,
  ``required``, enums, consts...), the settings (``thinking``,
  ``service_tier``, sampling), ``metadata``'s other keys, a message's fields
  other than ``content`` (and a role that is not ``user``/``assistant``).
  A redact rule matching one blocks the request (``apply(fixed=True)`` treats
  a whole document so: a batch's ``custom_id`` and everything outside
  ``params``).

Never scanned: base64 image data and non-text base64 documents (opaque
binary), ``thinking`` / ``redacted_thinking`` blocks (model output carrying a
signature that redaction would break).

Normalisation (what makes case, Unicode and formatting tricks fail): each
string is NFKC-normalised (fullwidth letters, ligatures, circled and
mathematical letters, compatibility spaces, etc.), default-ignorable code
points are removed (zero-width space/joiners U+200B-U+200D, word joiner
U+2060, BOM U+FEFF, soft hyphen U+00AD, bidi controls, variation selectors,
tag characters, ...) and so are control characters (C0 but TAB, LF and CR;
DEL; C1, NEL included: NUL or ESC inside a key split it for a regex, not
for a reader), and common Cyrillic/Greek/Latin look-alikes and
Unicode dashes are folded to their ASCII twins. Detectors and ASCII regex
rules see the folded text; a regex rule with non-ASCII characters (or
``\\u``/``\\x``/``\\N`` escapes) sees the NFKC text without the look-alike
fold, so ``pattern: 'секрет'`` still works. Regex rules are case-insensitive.
JSON escapes need nothing: the body is already decoded by ``json.loads``.
A rule ``pattern`` that NFKC would change is refused at load (it could never
match normalised text).

Detectors (precise rather than greedy):

* ``anthropic_key``: ``sk-ant-<kind><NN>-`` + 32+ base64url characters
  (api03, admin01, ...);
* ``openai_key``: ``sk-``, ``sk-proj-``, ``sk-svcacct-``, ``sk-admin-`` + 20+
  characters that look random (digits, upper and lower case, a 16+ run),
  not preceded by a word character (so ``task-...`` never counts);
* ``aws_access_key``: ``AKIA``/``ASIA`` + 16 upper-case letters/digits, as a
  whole token; ``aws_secret_key``: 40 base64 characters after a label
  (``aws_secret_access_key``, ``AWS_SECRET_ACCESS_KEY``, ``SecretAccessKey``,
  ``aws_secret_key``...) and ``=``, ``:``, ``=>`` or whitespace;
* ``github_token``: ``ghp_ gho_ ghu_ ghs_ ghr_`` + 36+, ``github_pat_`` + 50+;
* ``private_key``: a PEM ``-----BEGIN ... PRIVATE KEY-----`` block (any case,
  RSA/EC/DSA/OPENSSH/ENCRYPTED/PGP ... BLOCK) through its END line, or the
  key-looking lines after a header whose END is missing;
* ``card_number``: 13-19 digits, optionally grouped by single spaces or
  hyphens, passing Luhn, a known brand prefix with a matching length (Visa,
  Mastercard incl. 2-series, Amex, Discover/UnionPay, JCB, Diners, Maestro),
  and not one repeated digit. A card followed by a CVV or inside a short list
  of numbers is found by trying whole groups of 3+ digits. Runs of 32+ groups
  are treated as data and skipped. Any Unicode decimal digits count.

Split content: besides every string on its own, all strings of the request
are scanned as texts in document order (system, messages, then tools):

* glued with nothing between them: a secret or phrase split over any number
  of blocks, messages or tool-input values;
* glued in runs of 2 to 8 neighbours, with a hard stop (NUL, which no
  normalised string contains) around each run, once for every alignment: in
  the fully glued text the pieces around a split secret touch it (a word
  character after ``AKIA..``+``..MPLE``, a digit after a card) and the
  detectors' whole-token checks fail; in a run join a secret split over up
  to eight pieces ends where they end, whatever the next piece starts with.
  A match that takes the stop itself for a character (``\\S``, ``[^ ]``) is
  dropped, so the stop creates no match;
* joined with a space, dict keys included (a label key meets its value).

Dict keys and fixed fields are left out of the glued joins (a key sits
between two values; a greedy match running on into a role or a model name
would turn a redaction into a block). Known gap: a secret split over nine
or more pieces whose neighbours touch it is found only where the fully
glued text still matches. A match that crosses a piece boundary is redacted
in every piece it touches (each part replaced by the marker; a neighbouring
block can lose a few characters), a blocking rule simply blocks. Gluing can
occasionally join two innocent pieces into a match (``...project`` +
``x...``): the price of the guarantee.

Redaction replaces each matched span of the ORIGINAL string with
``[REDACTED:<rule name>]``; offsets found in the normalised text are mapped
back, so zero-width padding inside a secret goes with it. For the labelled
AWS secret only the 40-character value is replaced, the label stays. A key
of a tool-input dict is renamed (``#2``... appended on a clash), an integer
replaced by the marker string. If the offsets of a non-ASCII string cannot be
mapped back exactly (exotic combining sequences, or 200k+ special
characters), the whole string is replaced: fail closed.

Results never carry matched text: a :class:`Verdict` holds the rule name,
its action, a match count and the names of detectors that fired, and
``repr(FilterResult)`` leaves the body out.

Performance: strings are gathered without copying the body; ASCII strings
skip normalisation and the rest are normalised in C (the offset map is built
only when redacting). Each detector first runs a literal "gate" over the two
joined texts (every detector regex starts with a literal), the card detector
scans only digit regions and the AWS-secret one only windows around
"secret"; the real matchers run only when a gate fires. Operator patterns
that begin with a plain word are gated by one substring test on the lower-
cased text. A redacted body copies only the containers on the way to a
changed string. All work is linear in the body: about 50-150 ms per MB of
adversarial text (zero-width padding, CJK, walls of digits or PEM headers),
tens of microseconds for a typical 2 KB request; a caller may want to run
very large bodies in an executor. Operator regexes run on Python's
backtracking ``re``; :mod:`.regex_safety` refuses the shapes that make it
super-linear when the config is loaded.

Not covered (by design or left for later): look-alikes beyond the folded
Cyrillic/Greek set (NFKC handles compatibility forms, not confusables in
general); a card written with one digit per group inside a longer run, or
hidden in a run of 32+ numbers; secrets spelled out, encoded (base64, hex) or
split with visible characters; ``thinking`` blocks.
"""

from claudegate_gateway.filters.detectors import DETECTORS
from claudegate_gateway.filters.policy import FilterPolicy
from claudegate_gateway.filters.results import FilterResult, Verdict

__all__ = ["DETECTORS", "FilterPolicy", "FilterResult", "Verdict"]
