"""Texts to send: a built-in corpus of varied English and Chinese short texts, or one from a file."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from itertools import cycle
from pathlib import Path

DEFAULT_SEED = 20240611
DEFAULT_ENGLISH = 14_000
DEFAULT_CHINESE = 6_000


def words(text: str) -> tuple[str, ...]:
    """Split a "|"-separated word list (kept as text so it stays readable)."""
    return tuple(word.strip() for word in text.split("|") if word.strip())


EN_SUBJECTS = words(
    """
    the customer | our team | a new user | my neighbour | the support agent | the warehouse manager |
    a returning buyer | the delivery driver | my manager | the hotel guest | a first-time visitor |
    the product owner | the night shift | our landlord | the school nurse | a software engineer | the bank teller |
    an angry caller | the sales lead | my grandmother | the city council | a small bakery | the airline crew |
    the data team | a local farmer | the museum guide | our accountant | the train conductor |
    a tourist from Spain | the security guard
    """
)
EN_VERBS = words(
    """
    reported | asked about | could not find | wants to cancel | was charged twice for | praised | complained about |
    is still waiting for | accidentally deleted | needs a refund for | cannot open | recommended | updated |
    lost track of | double-checked | forgot about | renewed | shared a photo of | translated | repaired | ordered |
    returned | reviewed | misplaced | approved | rejected | scheduled | postponed | measured | painted
    """
)
EN_OBJECTS = words(
    """
    the invoice from last month | a delayed shipment | the password reset link | a broken umbrella |
    the quarterly report | two concert tickets | the spare room key | a blue winter jacket | the loyalty points |
    an expired coupon | the printer on the third floor | a jar of honey | the weekly newsletter |
    a cracked phone screen | the parking permit | a vegetarian lunch box | the insurance claim |
    a second-hand bicycle | the wifi router | a birthday cake | the rental contract | a pair of running shoes |
    the train timetable | a library book | the kitchen sink | a cup of green tea | the garden fence |
    a wedding invitation | the tax form | an old family recipe | the conference badge | a box of crayons |
    the emergency exit sign | a bottle of olive oil | the monthly budget | a stray cat | the heating bill |
    a wool scarf | the backup drive | a handwritten note
    """
)
EN_CONTEXTS = words(
    """
    on the mobile app | after the latest update | during checkout | before the holidays | at the front desk |
    over the phone | in the online chat | right after lunch | late on Friday | at the airport |
    in the shared drive | during the storm | on the way home | at the farmers market | in the second week of March |
    while the site was down | before the meeting | at midnight | in the staff kitchen | after moving house |
    from the hotel lobby | on a rainy Sunday | at the end of the quarter | during the school trip |
    next to the main entrance | without any warning | for the third time | in a hurry | with a smile |
    on short notice
    """
)
EN_QUESTIONS = words(
    """
    How do I | Is it possible to | Where can I | Why can't I | What is the fastest way to | Who should I ask to |
    When is the best time to | Can someone help me | Is there a way to | What happens if I
    """
)
EN_ACTIONS = words(
    """
    change | track | return | replace | pay for | split | share | export | cancel | find | book | print | clean |
    repair | upgrade | transfer | label | recycle | insure | ship
    """
)
EN_ADJECTIVES = words(
    """
    lightweight | waterproof | handmade | refurbished | organic | compact | stainless steel | wireless | vintage |
    foldable | energy-saving | hand-painted | noise-cancelling | ceramic | solar-powered | ergonomic |
    rechargeable | bamboo | leather | glass
    """
)
EN_PRODUCTS = words(
    """
    desk lamp | travel mug | hiking backpack | coffee grinder | phone case | garden hose | yoga mat | bookshelf |
    rice cooker | bike helmet | laptop stand | kettle | tent | picture frame | alarm clock | cutting board |
    raincoat | sunglasses | wall clock | headphones
    """
)
EN_DETAILS = words(
    """
    for small apartments | with free shipping | in dark green | for beginners | with a two-year warranty |
    that fits in a drawer | for left-handed people | sold in pairs | made in Portugal | for cold weather |
    with a spare battery | in three sizes | for outdoor use | that folds flat | for kids and adults
    """
)

ZH_SUBJECTS = words(
    """
    客户 | 我们的团队 | 一位新用户 | 我的邻居 | 客服人员 | 仓库经理 | 老顾客 | 快递员 | 我的经理 | 酒店客人 |
    第一次来的游客 | 产品负责人 | 夜班同事 | 房东 | 学校护士 | 软件工程师 | 银行柜员 | 一位生气的来电者 | 销售主管 |
    我奶奶 | 市议会 | 一家小面包店 | 机组人员 | 数据团队 | 本地农民
    """
)
ZH_CONTEXTS = words(
    """
    在手机应用上 | 更新之后 | 结账的时候 | 放假之前 | 在前台 | 通过电话 | 在在线客服里 | 午饭以后 | 周五晚上 |
    在机场 | 在共享盘里 | 暴雨期间 | 回家的路上 | 在农贸市场 | 三月的第二周 | 网站宕机时 | 开会之前 | 半夜 |
    在员工厨房 | 搬家以后 | 在酒店大堂 | 一个下雨的周日 | 季度末 | 春游的时候
    """
)
ZH_VERBS = words(
    """
    反馈了 | 询问了 | 找不到 | 想要取消 | 被重复扣款了 | 表扬了 | 投诉了 | 还在等 | 不小心删除了 | 需要退款 |
    打不开 | 推荐了 | 更新了 | 弄丢了 | 仔细核对了 | 忘记了 | 续订了 | 翻译了 | 修好了 | 订购了 | 退回了 | 评价了 |
    批准了 | 拒绝了 | 推迟了
    """
)
ZH_OBJECTS = words(
    """
    上个月的发票 | 延迟的包裹 | 重置密码的链接 | 一把坏掉的雨伞 | 季度报告 | 两张演唱会门票 | 备用房间钥匙 |
    一件蓝色的冬季外套 | 会员积分 | 过期的优惠券 | 三楼的打印机 | 一罐蜂蜜 | 每周简报 | 碎了屏幕的手机 |
    停车许可证 | 一份素食午餐 | 保险理赔 | 一辆二手自行车 | 无线路由器 | 生日蛋糕 | 租房合同 | 一双跑步鞋 |
    火车时刻表 | 图书馆的书 | 厨房水槽 | 一杯绿茶 | 花园的篱笆 | 婚礼请柬 | 报税表格 | 一份老家的菜谱
    """
)
ZH_QUESTIONS = words(
    """
    怎么才能 | 有没有办法 | 在哪里可以 | 为什么我不能 | 最快的办法是什么来 | 应该找谁 | 什么时候最适合 |
    能不能帮我 | 请问如何 | 如果我想
    """
)
ZH_ACTIONS = words(
    """
    修改 | 查询 | 退回 | 更换 | 支付 | 分享 | 导出 | 取消 | 预订 | 打印 | 清洗 | 维修 | 升级 | 转账 | 邮寄
    """
)
ZH_THINGS = words(
    """
    我的订单 | 会员卡 | 收货地址 | 电子发票 | 航班座位 | 快递单号 | 银行卡 | 家里的网络 | 工作日程 | 学生证 |
    体检报告 | 旧手机 | 租车合同 | 健身课程 | 电费账单 | 护照照片 | 公司邮箱 | 孩子的校服
    """
)

Template = tuple[Sequence[str], ...]
Render = Callable[[tuple[str, ...], int], str]


def _english(parts: tuple[str, ...], shape: int) -> str:
    if shape == 0:
        subject, verb, obj, context = parts
        return f"{subject[0].upper()}{subject[1:]} {verb} {obj} {context}."
    if shape == 1:
        question, action, obj, context = parts
        return f"{question} {action} {obj} {context}?"
    adjective, product, detail, context = parts
    return f"{adjective} {product} {detail}, ordered {context}"


def _chinese(parts: tuple[str, ...], shape: int) -> str:
    if shape == 0:
        subject, context, verb, obj = parts
        return f"{subject}{context}{verb}{obj}。"
    question, action, thing, context = parts
    return f"{question}{context}{action}{thing}？"


ENGLISH_SHAPES: tuple[Template, ...] = (
    (EN_SUBJECTS, EN_VERBS, EN_OBJECTS, EN_CONTEXTS),
    (EN_QUESTIONS, EN_ACTIONS, EN_OBJECTS, EN_CONTEXTS),
    (EN_ADJECTIVES, EN_PRODUCTS, EN_DETAILS, EN_CONTEXTS),
)
CHINESE_SHAPES: tuple[Template, ...] = (
    (ZH_SUBJECTS, ZH_CONTEXTS, ZH_VERBS, ZH_OBJECTS),
    (ZH_QUESTIONS, ZH_ACTIONS, ZH_THINGS, ZH_CONTEXTS),
)


def _combination(lists: Template, index: int) -> tuple[str, ...]:
    """Decode `index` as a mixed-radix number: one word from each list."""
    parts = []
    for words in lists:
        index, digit = divmod(index, len(words))
        parts.append(words[digit])
    return tuple(parts)


def _sample(shapes: tuple[Template, ...], count: int, rng: random.Random, render: Render) -> list[str]:
    sizes = [_size(lists) for lists in shapes]
    per_shape = [count // len(shapes) + (1 if i < count % len(shapes) else 0) for i in range(len(shapes))]
    texts = []
    for shape, (lists, size, wanted) in enumerate(zip(shapes, sizes, per_shape, strict=True)):
        for index in rng.sample(range(size), min(wanted, size)):
            texts.append(render(_combination(lists, index), shape))
    return texts


def _size(lists: Template) -> int:
    size = 1
    for words in lists:
        size *= len(words)
    return size


def default_corpus(
    english: int = DEFAULT_ENGLISH, chinese: int = DEFAULT_CHINESE, seed: int = DEFAULT_SEED
) -> list[str]:
    """Return unique English and Chinese short texts built from word lists, shuffled, the same on every call."""
    rng = random.Random(seed)
    texts = _sample(ENGLISH_SHAPES, english, rng, _english) + _sample(CHINESE_SHAPES, chinese, rng, _chinese)
    texts = list(dict.fromkeys(texts))
    rng.shuffle(texts)
    return texts


class CorpusError(ValueError):
    """The corpus file cannot be used."""


def read_corpus(path: Path) -> list[str]:
    """Return the non-blank lines of a UTF-8 file, one text per line.

    Raises:
        CorpusError: the file cannot be read or holds no text.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read corpus {path}: {exc}") from exc
    texts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not texts:
        raise CorpusError(f"corpus {path} holds no text (one text per line expected)")
    return texts


def batches(texts: Sequence[str], size: int) -> Iterator[list[str]]:
    """Yield lists of `size` texts, walking the corpus round and round."""
    source = cycle(texts)
    while True:
        yield [next(source) for _ in range(size)]


def main() -> None:
    """Print the default corpus, one text per line (how bench/corpora/default.txt is made)."""
    import sys

    sys.stdout.write("\n".join(default_corpus()) + "\n")


if __name__ == "__main__":
    main()
