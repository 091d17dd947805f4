"""Data-first cues for attacks on the model: phrases that mean "drop your instructions".

The trained classifiers learn the style of the attacks in their training data; these cues
catch the few phrasings that *define* an attack wherever it comes from ("ignore all
previous instructions", "print your system prompt", "you are now in developer mode"), in
English and the other languages we have data or speakers for. Each :class:`Cue` is one
regular expression over the normalised text (NFKC, case-folded, one space between words)
with a weight; several cues combine by noisy-OR, so two weak cues (e.g. "stay in character"
and "no ethical guidelines") add up while one alone does not reach the default threshold.

Adding a phrasing or a language means adding a line to ``CUES``. Cues name their family,
``injection`` or ``jailbreak`` (see ``policies.training.datasets`` for the split).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

Family = Literal["injection", "jailbreak", "indirect"]

STRONG, MEDIUM, WEAK = 0.95, 0.8, 0.4


@dataclass(frozen=True, slots=True)
class Cue:
    name: str
    family: Family
    weight: float
    pattern: str
    #: literal strings of which every match contains one: a cheap ``in`` test over these
    #: skips the regular expression on most texts
    triggers: tuple[str, ...] = ()


# fmt: off
CUES: tuple[Cue, ...] = (
    # --- injection: override the instructions ---------------------------------------
    Cue("override_instructions", "injection", STRONG,
        r"\b(?:ignore|disregard|forget|skip|bypass|override|overlook|neglect|abandon|(?:do not|"
        r"don['’]t|stop) follow(?:ing)?)\b(?: \S+){0,3}? (?:previous|prior|above|earlier|preceding|"
        r"foregoing|original|initial|system|developer|safety|your|all(?: of)?(?: the| your| my)?|"
        r"these|those)(?: \S+){0,2}? (?:instructions?|prompts?|rules|directions|guidelines|"
        r"directives?|commands|constraints|restrictions|programming|guardrails|polic(?:y|ies))\b",
        triggers=("ignor", "disregard", "forget", "skip", "bypass", "overrid", "overlook", "neglect",
                  "abandon", "follow")),
    Cue("ignore_above_and_output", "injection", STRONG,
        r"\b(?:ignore|disregard|forget)\b(?: \S+){0,3}? (?:above|previous|preceding|prior|"
        r"earlier)\b(?: \S+){0,2}? (?:questions?|text|content|input|request|task|context|sentences?|"
        r"statements?)\b.{0,60}?\b(?:output|print|say|write|respond|reply|answer|return|repeat)\b",
        triggers=("ignor", "disregard", "forget")),
    Cue("ignore_and_output", "injection", MEDIUM,
        r"\b(?:ignore|disregard|forget|(?:do not|don['’]t) answer|no need to answer)\b(?: \S+){0,4}?"
        r" (?:questions?|commands?|instructions?|requests?|tasks?|text|input|"
        r"prompt)\b.{0,60}?\b(?:output|print|say|respond|reply|answer|repeat|your (?:new |"
        r"real )?task is)\b",
        triggers=("ignor", "disregard", "forget", "answer")),
    Cue("new_task", "injection", WEAK,
        r"\b(?:now|from now on),? your (?:new |real )?task is\b",
        triggers=("task",)),
    Cue("output_override", "injection", WEAK,
        r"\b(?:directly|just|only|instead) (?:output|print|say|reply with|respond with)\s*[:：]",
        triggers=("output", "print", "say", "reply", "respond")),
    Cue("new_instructions", "injection", MEDIUM,
        r"(?:#{2,}|\[|<)\s*(?:new |updated |real )?(?:system )?instructions?\s*(?:\]|>|:)|<\|"
        r"im_start\|>\s*system|\[/?inst\]|<\|?system\|?>|\bnew (?:system )?instructions? ?:",
        triggers=("instruction", "im_start", "inst]", "system")),
    # --- injection: extract the system prompt -----------------------------------------
    Cue("system_prompt_extraction", "injection", STRONG,
        r"\b(?:print|reveal|show|repeat|output|display|tell|give|share|leak|dump|expose|disclose|"
        r"recite|spell out|write out|copy|paste)\b(?: me| us)?(?: \S+){0,2}? (?:your|the|"
        r"its)(?: \S+){0,2}? (?:system|initial|original|hidden|secret|developer|confidential|"
        r"pre-?) ?(?:prompts?|instructions?|messages?|rules|guidelines|directives?|configuration)\b",
        triggers=("prompt", "instruction", "message", "rules", "guideline", "directive", "configuration")),
    Cue("what_is_your_prompt", "injection", STRONG,
        r"\bwhat(?:['’]s| is| are| were| was) (?:your|the) (?:\S+ )?(?:system prompt|initial"
        r" (?:prompt|instructions)|original instructions|hidden instructions)",
        triggers=("prompt", "instructions")),
    Cue("repeat_text_above", "injection", MEDIUM,
        r"\b(?:repeat|print|output|copy|recite)\b(?: \S+){0,3}? (?:words|text|everything|instructions|"
        r"all)(?: \S+){0,2}? (?:above|before this|preceding)\b",
        triggers=("above", "before this", "preceding")),
    Cue("system_prompt_mention", "injection", WEAK,
        r"\bsystem ?prompt\b|\bpre-?prompt\b",
        triggers=("prompt",)),
    # --- other languages: "ignore the previous instructions / the question above" -----
    Cue("override_de", "injection", STRONG,
        r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*)(?: \S+){0,4}? (?:vorherigen?|obigen?|"
        r"oben genannten|bisherigen?|vorangegangenen?|vorigen?|früheren?|alle)(?: \S+){0,2}?"
        r" (?:anweisung\w*|instruktion\w*|befehl\w*|regeln|fragen?|aufgaben?|vorgaben|"
        r"eingabeaufforderung)\b",
        triggers=("ignorier", "vergiss", "vergessen", "missacht")),
    Cue("override_fr", "injection", STRONG,
        r"\b(?:ignor\w*|oubli\w*|ne tiens pas compte)(?: \S+){0,3}? (?:instructions?|consignes?|"
        r"règles|questions?|directives) (?:précédent\w*|ci-dessus|antérieur\w*|d['’]avant)",
        triggers=("ignor", "oubli", "tiens pas compte")),
    Cue("override_es_pt_it", "injection", STRONG,
        r"\b(?:ignor\w*|olvid\w*|esqueç\w*|desconsider\w*|dimentic\w*)(?: \S+){0,3}? (?:instrucciones|"
        r"instrucción|indicaciones|reglas|preguntas?|instruções|instrução|regras|perguntas?|"
        r"istruzioni|regole|indicazioni|domande?) (?:anterior(?:es)?|previas?|de arriba|precedent\w*|"
        r"acima|prévias?|sopra|di sopra)",
        triggers=("ignor", "olvid", "esqueç", "desconsider", "dimentic")),
    Cue("override_ru", "injection", STRONG,
        r"(?:про)?игнорир\w*(?: \S+){0,3}? (?:предыдущ|вышеприведенн|вышеуказанн|приведенн|прошл|"
        r"прежн|все)\w*(?: \S+){0,2}? (?:инструкци|указани|правил|вопрос|команд)\w*|забуд\w* (?:все |"
        r"свои )*(?:предыдущ\w+ )?(?:инструкци|указани|правил)\w*",
        triggers=("игнорир", "забуд")),
    Cue("override_zh", "injection", STRONG,
        r"(?:忽略|无视|無視|忽视|忽視|不要理会|不要理會|忘记|忘記|忘掉)(?:掉)?(?:你)?(?:之前|以上|上面|前面|上述|先前|以前|此前|所有|全部|一切|原来|原來|"
        r"原有)(?:的)?(?:所有|全部|一切)?(?:的)?(?:指令|指示|说明|說明|提问|提問|问题|問題|规则|規則|要求|命令|设定|設定)",
        triggers=("忽略", "无视", "無視", "忽视", "忽視", "不要理", "忘记", "忘記", "忘掉")),
    Cue("override_ja", "injection", STRONG,
        r"(?:以前|前|上記|これまで|上|先ほど|全て|すべて)の(?:すべての|全ての)?(?:指示|命令|質問|ルール|指令|設定)(?:は|を)(?:すべて|全て)?(?:無視|忘れ)",
        triggers=("無視", "忘れ")),
    Cue("override_ko", "injection", STRONG,
        r"(?:이전|위의|위|앞의|앞|모든|기존) ?(?:의 )?(?:모든 )?"
        r"(?:지시|지침|명령|질문|규칙|설정)\S* ?(?:모두 )?(?:무시|잊어)",
        triggers=("무시", "잊어")),
    Cue("override_ar", "injection", STRONG,
        r"(?:تجاهل|تجاهلي|تجاهلوا|انس|انسى|أهمل|اهمل)\S* (?:\S+ ){0,2}?(?:التعليمات|الأوامر|الأسئلة|"
        r"السؤال|الإرشادات|القواعد)",
        triggers=("تجاهل", "انس", "أهمل", "اهمل")),
    Cue("override_hi", "injection", STRONG,
        r"(?:पिछले|पिछली|पिछला|उपरोक्त|ऊपर|पहले|सभी)(?: \S+){0,3}? (?:निर्देश|प्रश्न|सवाल|"
        r"आदेश)\S*(?: \S+){0,2}? (?:अनदेखा|नज़रअंदाज़|नजरअंदाज|उपेक्षा|ध्यान न)",
        triggers=("अनदेखा", "नज़रअंदाज़", "नजरअंदाज", "उपेक्षा", "ध्यान न")),
    Cue("override_bn", "injection", STRONG,
        r"(?:উপরের|পূর্ববর্তী|আগের|পূর্বের|সমস্ত)(?: \S+){0,2}? (?:প্রশ্ন|নির্দেশ)\S* (?:উপেক্ষা|"
        r"অগ্রাহ্য)",
        triggers=("উপেক্ষা", "অগ্রাহ্য")),
    Cue("override_vi", "injection", STRONG,
        r"\b(?:bỏ qua|phớt lờ|lờ đi|quên)(?: tất cả| mọi)?(?: các| những)? (?:hướng dẫn|chỉ dẫn|"
        r"chỉ thị|lệnh|câu hỏi|quy tắc|yêu cầu) (?:trước đó|trước|ở trên|phía trên|bên trên|trên)",
        triggers=("bỏ qua", "phớt lờ", "lờ đi", "quên")),
    Cue("override_tr", "injection", STRONG,
        r"\b(?:önceki|yukarıdaki|tüm|bütün)(?: \S+)? (?:talimatlar\S*|komutlar\S*|kurallar\S*|"
        r"sorular\S*|yönergeler\S*)(?: \S+)? (?:yok say|görmezden gel|unut|dikkate alma)",
        triggers=("yok say", "görmezden", "unut", "dikkate alma")),
    Cue("override_id", "injection", STRONG,
        r"\b(?:abaikan|lupakan)(?: semua)? (?:instruksi|perintah|petunjuk|aturan|pertanyaan)"
        r" (?:sebelumnya|di atas|tadi)",
        triggers=("abaikan", "lupakan")),
    # --- indirect: text in a document or tool result that speaks to the model ----------
    Cue("addressed_to_ai", "indirect", MEDIUM,
        r"\b(?:note|message|instructions?|attention|important|reminder|directive)s? (?:to|for) (?:the |any |all )?"
        r"(?:ai|a\.i\.|assistants?|ai assistants?|language models?|llms?|chatbots?|models?|agents?|bots?|gpts?)\b",
        triggers=("note", "message", "instruction", "attention", "important", "reminder", "directive")),
    Cue("ai_vocative", "indirect", MEDIUM,
        r"(?:^ ?|[\n.!?>:\-] ?)(?:hey |dear |attention |hi )?(?:ai|ai assistant|assistant|chatgpt|claude|gemini|gpt|"
        r"llm|language model|ai model|ai agent)\s?[,:] ",
        triggers=("ai", "assistant", "chatgpt", "claude", "gemini", "gpt", "llm", "model", "agent")),
    Cue("if_you_are_an_ai", "indirect", MEDIUM,
        r"\bif you(?:['’]re| are) (?:an? )?(?:ai|language model|llm|ai assistant|assistant|chatbot|gpt|bot|agent)\b",
        triggers=("if you",)),
    Cue("hide_from_user", "indirect", MEDIUM,
        r"\b(?:do not|don['’]t|never|without) (?:tell(?:ing)?|inform(?:ing)?|mention(?:ing)? (?:this|it) to|"
        r"reveal(?:ing)? (?:this|it) to|alert(?:ing)?|show(?:ing)? (?:this|it) to) the user\b",
        triggers=("the user",)),
    Cue("when_processing_this", "indirect", WEAK,
        r"\bwhen (?:you )?(?:summari[sz]|read|process|answer|respond|reply)\w*(?: to)? (?:this|the|these)\b.{0,80}?"
        r"\b(?:tell|say|include|respond|reply|add|insert|recommend|visit|send|call|output)\b",
        triggers=("when",)),
    # data that tells the reader how to shape *its answer*: a document is written for people,
    # who do not have "a response" to format; the assistant reading it does
    Cue("response_directive", "indirect", WEAK,
        r"\b(?:in|to|into|throughout|at the (?:start|end|beginning|top|bottom) of|begin|start|end|"
        r"conclude|finish|prefix|append to) your (?:answers?|repl(?:y|ies)|responses?|output|summary)\b|"
        r"\byour (?:answers?|repl(?:y|ies)|responses?|output) (?:must|should|shall|needs? to|has to)\b|"
        r"\b(?:express|format|write|phrase|rewrite|translate|deliver|give) your (?:entire |whole |final )?"
        r"(?:answers?|repl(?:y|ies)|responses?|output)\b|"
        r"\b(?:answer|reply|respond) (?:only |exclusively |entirely )?(?:in|using|with) (?:emojis?|all caps|"
        r"capital letters|rhymes?|pig latin|base64|morse|leetspeak)\b",
        triggers=("your answer", "your repl", "your respons", "your output", "your summary", "your entire",
                  "your whole", "your final", "answer ", "reply ", "respond ")),
    Cue("exfiltration_image", "indirect", WEAK,
        r"!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s=]*=",
        triggers=("](http",)),
    # --- jailbreak: switch the model into an unrestricted persona ---------------------
    Cue("do_anything_now", "jailbreak", STRONG,
        r"\bdo anything now\b|\bdan mode\b|\bdan,? which stands for\b",
        triggers=("anything now", "dan")),
    # "enable developer mode" alone is an Android setting: only a persona is a cue.
    Cue("unrestricted_mode", "jailbreak", STRONG,
        r"\b(?:you are|you['’]re|act as|pretend to be|become|simulate|now in)\b(?: now)?(?: in)?"
        r"(?: an?| the)? (?:dan|developer mode|dev mode|god mode|jailbroken|jailbreak mode|unfiltered|"
        r"unrestricted|uncensored|evil (?:ai|bot|assistant)|amoral)\b",
        triggers=("dan", "mode", "jailbroken", "unfiltered", "unrestricted", "uncensored", "evil", "amoral")),
    Cue("enable_unrestricted_mode", "jailbreak", STRONG,
        r"\b(?:enable|enter|activate|switch to)\b(?: the)? (?:dan|god|jailbreak|unfiltered|unrestricted|"
        r"uncensored|evil) mode\b",
        triggers=("mode",)),
    Cue("mode_enabled", "jailbreak", STRONG,
        r"\b(?:god|jailbreak|dan) mode (?:enabled|activated|on)\b|\b(?:developer|dev) mode output\b",
        triggers=("mode",)),
    Cue("no_rules", "jailbreak", MEDIUM,
        r"\b(?:without|free (?:of|from)|no longer (?:bound|restricted) by|not bound by|(?:does not|"
        r"doesn['’]t|don['’]t|do not) (?:have|follow)|has no|have no|with no|break free of|freed from|"
        r"ignore|bypass)(?: any| all)? (?:ethical|moral|content|safety|openai['’]?s?|programming|ai|"
        r"legal)(?: \S+)? (?:restrictions|filters?|guidelines|limits|limitations|boundaries|polic(?:y|"
        r"ies)|rules|censorship|principles|constraints|considerations)\b",
        triggers=("restriction", "filter", "guideline", "limit", "boundar", "polic", "rules",
                  "censorship", "principle", "constraint", "consideration")),
    Cue("response_tags", "jailbreak", MEDIUM,
        r"\[(?:🔓|🔒)? ?(?:jailbreak|classic|dan|gpt|developer mode output|normal output)\]|\((?:🔓|"
        r"🔒) ?\w+",
        triggers=("[", "(🔓", "(🔒")),
    Cue("stay_in_character", "jailbreak", WEAK,
        r"\b(?:stay|remain|keep) in character\b|\b(?:never|don['’]t|do not) (?:break|"
        r"leave) character\b",
        triggers=("character",)),
    Cue("refusal_suppression", "jailbreak", WEAK,
        r"\b(?:never|don['’]t|do not|must not|cannot|can['’]t|won['’]t) (?:refuse|decline|say"
        r" (?:that )?(?:you|it) can['’]?not|apologi[sz]e)\b|\bno (?:warnings|disclaimers)\b",
        triggers=("refuse", "decline", "apologi", "cannot", "can't", "can’t", "warning", "disclaimer")),
    Cue("affirmative_prefix", "jailbreak", MEDIUM,
        r"\b(?:begin|start) (?:your|the) (?:reply|response|answer) with\b.{0,12}\bsure\b",
        triggers=("sure",)),
    Cue("amoral_persona", "jailbreak", WEAK,
        r"\bamoral\b|\bunfiltered\b|\buncensored\b|\bmachiavellian\b|\bunethical ai\b",
        triggers=("amoral", "unfiltered", "uncensored", "machiavellian", "unethical ai")),
    Cue("jailbreak_word", "jailbreak", WEAK,
        r"\bjailbr(?:eak|oken)\b",
        triggers=("jailbr",)),
    Cue("fiction_shield", "jailbreak", WEAK,
        r"\bfor (?:purely )?(?:fictional|hypothetical|educational|research) (?:purposes|reasons)\b|"
        r"\bhypothetical(?:ly)? (?:scenario|response|story)\b",
        triggers=("fictional", "hypothetical", "educational", "research")),
)
# fmt: on


@cache
def _compiled(families: frozenset[str]) -> tuple[tuple[Cue, re.Pattern[str]], ...]:
    return tuple((cue, re.compile(cue.pattern)) for cue in CUES if cue.family in families)


@cache
def _triggers(families: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted({t for cue in CUES if cue.family in families for t in cue.triggers}))


def cue_score(normalized: str, families: frozenset[str]) -> tuple[float, tuple[str, ...]]:
    """Noisy-OR of the weights of the cues of ``families`` found in ``normalized`` text.

    ``normalized`` is the output of ``classifier.normalize``; returns (score, cue names).
    """
    present = {t for t in _triggers(families) if t in normalized}
    miss = 1.0
    names = []
    for cue, regex in _compiled(families):
        if cue.triggers and present.isdisjoint(cue.triggers):
            continue
        if regex.search(normalized):
            miss *= 1.0 - cue.weight
            names.append(cue.name)
    return 1.0 - miss, tuple(names)
