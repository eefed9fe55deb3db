"""How an instruction example becomes ids: the prompt the model reads, the response it learns.

A conversation is a list of messages (`{"role": ..., "content": ...}`) whose last one is
the assistant's response. With a tokenizer that has a chat template (SmolLM2's
`<|im_start|>role ... <|im_end|>`), the prompt is the template applied to every message but
the last with the generation prompt (`<|im_start|>assistant\\n`), and the response is what
the template adds for the last message: its content and the end-of-turn token. Without a
chat template, a plain template is used:

    ### Instruction:
    <user message>

    ### Response:
    <assistant message><EOS>

The plain template starts with the token the tokenizer puts before every text by default,
if any (Gemma's `<bos>`: without it Gemma-3 base writes only newlines); a chat template writes
its own. Prompt and response are tokenised separately, so training sees the prompt exactly as
generation does, and generation stops at EOS or at the template's end-of-turn token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loralab.errors import ConfigError

ROLES = ("system", "user", "assistant")
PLAIN_HEADERS = {"system": "", "user": "### Instruction:\n", "assistant": "### Response:\n"}
Message = dict[str, str]


def conversation(
    row: Mapping[str, Any],
    stage: str,
    index: int,
    fields: Mapping[str, str | None],
    system_prompt: str | None,
) -> list[Message]:
    """The messages of one data row: its `messages` list, or a prompt/response pair."""
    if fields.get("messages_field"):
        messages = row[fields["messages_field"]]
        key = "messages_field"
    else:
        messages = [
            {"role": "user", "content": row[fields["prompt_field"]]},
            {"role": "assistant", "content": row[fields["response_field"]]},
        ]
        key = "prompt_field/response_field"
    check_messages(stage, index, key, messages)
    if system_prompt is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def check_messages(stage: str, index: int, key: str, messages: Any) -> None:
    """Messages with a known role and text each, the last one the assistant's."""
    where = f"data.{key}: row {index} of the {stage} split"
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ConfigError(f"{where} holds no list of messages ({messages!r}); fix that row.")
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise ConfigError(
                f"{where} has a message without a role among {', '.join(ROLES)} "
                f"({message!r}); fix that row."
            )
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise ConfigError(f"{where} has a {message['role']} message without text; fix it.")
    if messages[-1]["role"] != "assistant":
        raise ConfigError(
            f"{where} does not end with an assistant message, the response to learn; fix that row."
        )


class ChatFormatter:
    """Turns conversations into (prompt ids, response ids) for one tokenizer."""

    def __init__(self, tokenizer: Any, chat_template: bool | None = None) -> None:
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template and not has_template:
            raise ConfigError(
                f"data.chat_template=true but data.tokenizer={tokenizer.name_or_path} has no "
                "chat template; set data.chat_template=null to use the plain template."
            )
        self.tokenizer = tokenizer
        self.uses_chat_template = has_template if chat_template is None else chat_template
        self.stop_ids = frozenset({tokenizer.eos_token_id} | self._end_of_turn_ids())
        self.leading_ids = [] if self.uses_chat_template else default_bos(tokenizer)

    def prompt_text(self, history: Sequence[Message]) -> str:
        """The text the model reads before it writes the next (assistant) message."""
        if not self.uses_chat_template:
            turns = "".join(f"{PLAIN_HEADERS[m['role']]}{m['content']}\n\n" for m in history)
            return turns + PLAIN_HEADERS["assistant"]
        template = self.tokenizer.apply_chat_template
        return template(list(history), tokenize=False, add_generation_prompt=True)

    def texts(self, messages: Sequence[Message]) -> tuple[str, str]:
        """The prompt text and the response text (the end-of-turn marker included)."""
        prompt = self.prompt_text(messages[:-1])
        if not self.uses_chat_template:
            return prompt, messages[-1]["content"]
        whole = self.tokenizer.apply_chat_template(list(messages), tokenize=False)
        if not whole.startswith(prompt):
            raise ConfigError(
                f"the chat template of data.tokenizer={self.tokenizer.name_or_path} does not "
                "render a conversation as its prompt followed by the response; set "
                "data.chat_template=false to use the plain template."
            )
        return prompt, whole[len(prompt) :]

    def prompt_ids(self, history: Sequence[Message]) -> list[int]:
        """The ids generation starts from, exactly as training tokenised a prompt."""
        ids = self.tokenizer(self.prompt_text(history), add_special_tokens=False)["input_ids"]
        return [*self.leading_ids, *ids]

    def encode(self, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
        """Prompt ids and response ids; a plain-template response ends with EOS."""
        prompt, response = self.texts(messages)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        if not self.uses_chat_template:
            response_ids = [*response_ids, self.tokenizer.eos_token_id]
        return [*self.leading_ids, *prompt_ids], list(response_ids)

    def _end_of_turn_ids(self) -> set[int]:
        """Special tokens the chat template puts after a response: they end a turn."""
        if not self.uses_chat_template:
            return set()
        probe = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        _, response = self.texts(probe)
        ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        special = set(self.tokenizer.all_special_ids)
        return {token for token in ids if token in special}


def default_bos(tokenizer: Any) -> list[int]:
    """[BOS] when the tokenizer starts every text with it by default, else []."""
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else []
