"""What the end-to-end benchmarks share: the demo shop's knowledge base, its questions, a
server on a free loopback port, and deleting a run. Import after `common.setup_django()`."""

import socket
import time

import httpx2
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import UsageEvent
from chatbot.models import Bot
from conversations.models import Contact, Conversation
from knowledge import services
from knowledge.demo import DEMO_DATA
from knowledge.ingest.pipeline import document_ingest
from knowledge.models import KnowledgeBase

DEMO_QUESTIONS = [  # bilingual, each answered by the demo documents
    "Cửa hàng mở cửa lúc mấy giờ?",
    "Chủ nhật shop có mở cửa không?",
    "Phí giao hàng nội thành là bao nhiêu?",
    "Bao lâu thì nhận được hàng?",
    "Tôi có thể đổi trả hàng trong bao nhiêu ngày?",
    "Hàng giảm giá có được đổi trả không?",
    "Shop nhận thanh toán bằng thẻ tín dụng không?",
    "Có thanh toán khi nhận hàng không?",
    "Làm thẻ thành viên như thế nào?",
    "Thành viên được giảm giá bao nhiêu?",
    "Shop có bảo hành sản phẩm không?",
    "Thông tin cá nhân của tôi được bảo vệ ra sao?",
    "What time does the store open?",
    "Are you open on Sundays?",
    "How much does delivery cost?",
    "How long does delivery take?",
    "Can I return an item I bought?",
    "Do you accept credit cards?",
    "Can I pay cash on delivery?",
    "How do I become a member?",
    "What discount do members get?",
    "Is there a warranty on products?",
    "How do you use my personal data?",
    "Where are your stores?",
]


def ingest_demo_documents(knowledge_base: KnowledgeBase) -> float:
    """Upload and index the demo shop's files through the real pipeline; the seconds it took."""
    started = time.perf_counter()
    for path in sorted(DEMO_DATA.iterdir()):
        document = services.document_create_from_upload(
            knowledge_base=knowledge_base, uploaded=SimpleUploadedFile(path.name, path.read_bytes())
        )
        document_ingest(document_id=document.pk, version=document.version)
    knowledge_base.refresh_from_db()
    return round(time.perf_counter() - started, 1)


def delete_run(knowledge_base: KnowledgeBase, bot: Bot | None) -> None:
    """Everything a run created: the bot's conversations, contacts and ledger rows, then the
    bot (its keys, cached answers and Zalo rows go with it) and the knowledge base."""
    if bot is not None:
        conversations = Conversation.objects.filter(bot_id=bot.pk)
        contact_ids = list(conversations.values_list("contact_id", flat=True))
        UsageEvent.objects.filter(bot_id=bot.pk).delete()
        conversations.delete()
        Contact.objects.filter(pk__in=contact_ids, conversations__isnull=True).delete()
        bot.delete()
    UsageEvent.objects.filter(knowledge_base_id=knowledge_base.pk).delete()
    for document in knowledge_base.documents.all():
        services.document_delete(document=document)
    # Redis copies of the bot's cached answers are never served without their rows and
    # expire by themselves.
    knowledge_base.delete()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(port: int, timeout: float = 60.0) -> None:
    """Until the project answers on `port` (the admin login: /healthz would also want a worker)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx2.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2, trust_env=False)
            if response.status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered on port {port} within {timeout:.0f} s")
        time.sleep(0.2)
