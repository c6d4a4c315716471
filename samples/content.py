"""The text of the sample corpus: a fictional company handbook written for Quelle (public domain, CC0).

`build.py` renders it as PDF, HTML, Markdown and DOCX. Kestrel Labs is invented; any likeness is chance.
"""

HANDBOOK_PDF = [  # one entry per page: (heading, paragraphs)
    ("Welcome to Kestrel Labs", [
        "This handbook describes how we work at Kestrel Labs. It applies to every employee in the Oslo, "
        "Tokyo and Shanghai offices unless a local guide says otherwise.",
        "Core working hours are 10:00 to 15:00 local time, Monday to Friday. Outside core hours you choose "
        "when to work, as long as your team can reach you during them.",
        "Questions about this handbook go to the People team at people@kestrel.example.",
    ]),
    ("Leave and time off", [
        "Every full-time employee receives 25 days of paid annual leave per calendar year. Part-time "
        "employees receive leave in proportion to their contracted hours.",
        "Up to 5 unused leave days may be carried over into the next year; carried-over days expire on "
        "31 March. Leave requests of more than 10 consecutive days need approval four weeks in advance.",
        "Sick leave is paid in full for up to 30 days per year. From the fourth consecutive day of "
        "illness, a doctor's note is required.",
        "Parental leave is 20 weeks at full pay for every new parent, to be taken within 18 months of the "
        "birth or adoption.",
    ]),
    ("Expenses at a glance", [
        "Business expenses are reimbursed when they are submitted in the Ledgerly app with a receipt within "
        "30 days of the purchase. Expenses submitted later need written approval from the finance team.",
        "Managers approve expenses up to 2,000 EUR. Anything above 2,000 EUR also needs approval from the "
        "finance director. The detailed rules are in the Travel and Expenses Policy.",
    ]),
    ("Laptops and accounts", [
        "Every new employee receives a laptop on the first day. Laptops are replaced every three years, or "
        "sooner when they fail.",
        "Your account is protected with a passphrase of at least 14 characters and multi-factor "
        "authentication. Never share a one-time code with anyone, including the IT service desk.",
        "Lost or stolen devices must be reported to the IT service desk within one hour on extension 4400.",
    ]),
    ("東京オフィスの勤務について", [
        "東京オフィスの従業員は、週に三日まで在宅勤務をすることができます。在宅勤務の予定は前週の金曜日までに"
        "チームのカレンダーに登録してください。",
        "通勤手当は月額二万円を上限として支給されます。",
    ]),
    ("上海办公室须知", [
        "上海办公室的员工每月可以申请最多八天远程办公。远程办公须提前两个工作日获得直属经理批准。",
        "办公室的门禁卡如有遗失，须在二十四小时内向行政部报告。",
    ]),
]

IT_SECURITY_HTML = {
    "title": "IT Security Policy — Kestrel Labs",
    "sections": [
        ("Passwords and passphrases", [
            "Use a passphrase of at least 14 characters for your Kestrel account. Passphrases do not expire, "
            "but you must change yours at once if you suspect someone else knows it.",
            "Store every other password in the company password manager, Vaultwise. Do not reuse a "
            "password across services.",
        ]),
        ("Multi-factor authentication", [
            "Multi-factor authentication (MFA) is required for email, the VPN, source code hosting and the "
            "Ledgerly expense app. Use the authenticator app or a hardware security key; SMS codes are not "
            "accepted.",
        ]),
        ("Reporting a security incident", [
            "Report phishing emails with the Report button in your mail client. Report any other suspected "
            "incident to security@kestrel.example or by calling extension 4400, day or night.",
            "Do not try to investigate an incident yourself and do not delete evidence.",
        ]),
        ("Data classification", [
            "Kestrel data is Public, Internal, Confidential or Restricted. Customer data is always "
            "Confidential. Salary and health data is Restricted: it may only be stored in the HR system.",
            "Confidential and Restricted data must never be pasted into external AI tools or translation "
            "websites.",
        ]),
    ],
}

EXPENSES_DOCX = {
    "title": "Travel and Expenses Policy",
    "sections": [
        ("Booking travel", [
            "Book flights and hotels through the Skyroute travel portal. Economy class is the default for "
            "flights under six hours; business class is allowed for longer flights.",
            "Train is preferred over flying for journeys under four hours.",
        ]),
        ("Per diem", [
            "The per diem for meals on business trips is 60 EUR per day within Europe and 80 EUR per day "
            "elsewhere. Meals paid by a customer or a conference are deducted from the per diem.",
        ]),
        ("Receipts", [
            "Photograph every receipt and upload it to Ledgerly within 30 days. Keep paper receipts over "
            "500 EUR for seven years for tax purposes.",
        ]),
        ("Approval limits", [
            "Team leads approve expenses up to 500 EUR, managers up to 2,000 EUR, and the finance director "
            "above 2,000 EUR.",
            "Alcohol, fines and personal entertainment are never reimbursed.",
        ]),
    ],
}

ONBOARDING_MD = """\
# Onboarding Guide

Welcome! This guide walks you through your first week at Kestrel Labs.

## Before your first day

Your manager sends you a welcome email with your start time and your onboarding buddy's name.
Sign the employment contract in the HR portal, Peoplebase, before your first day.

## Your first week

On day one you collect your laptop from the IT service desk and set up multi-factor authentication.
On day two you meet the People team for a tour of benefits, leave and the expense process.
By the end of the week, your buddy reviews your access to the tools your team uses.

### Accounts you will get

- Email and calendar
- Vaultwise, the password manager
- Ledgerly, for expenses
- Skyroute, for travel bookings

## Getting help

Ask your onboarding buddy first. For IT problems, call the service desk on extension 4400.
"""

TOKYO_MD = """\
# 東京オフィス案内

## 勤務時間

東京オフィスのコアタイムは十時から十五時までです。フレックスタイム制を採用しています。

## 在宅勤務

在宅勤務は週に三日まで認められます。在宅勤務の日も、コアタイムにはチャットで連絡が取れるようにしてください。

## 経費精算

経費は購入日から三十日以内に Ledgerly で申請してください。領収書の写真の添付が必要です。
交通費の精算では、最も経済的な経路を選んでください。
"""

SHANGHAI_HTML = {
    "title": "上海办公室指南",
    "sections": [
        ("考勤", ["上海办公室的核心工作时间为上午十点至下午三点。员工每月可以申请最多八天远程办公。"]),
        ("报销", ["差旅费用须在消费后三十天内通过 Ledgerly 提交报销，并附上发票照片。",
                  "出差期间的餐补标准为每天三百元人民币。"]),
        ("信息安全", ["所有账户必须启用多因素认证。发现可疑邮件请立即报告给安全团队。"]),
    ],
}
