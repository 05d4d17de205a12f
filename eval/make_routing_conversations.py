"""Writes eval/routing_conversations.jsonl: 44 scripted conversations (22 English, 22 Chinese),
each with the queue and priority the default `[routing]` rules should give it, alternately dev
and held-out. The customer turns were written for this set, not taken from support_turns."""
import json
C=[]
def conv(lang, queue, turns, tags=None, priority=None, why=""):
    C.append(dict(lang=lang, queue=queue, priority=priority, tags=tags or [], why=why,
                  turns=[{"role": r, "text": t} for r, t in turns]))
c='customer'; a='agent'
# English
conv('en','retention',[(c,'Hi'),(a,'Hello, how can I help?'),(c,'I want to cancel my broadband contract at the end of the month.')],why='cancellation after a greeting')
conv('en','billing',[(c,'Why does my invoice show a charge I did not expect?'),(a,'Let me look.'),(c,'It says "service adjustment", 12 pounds.')],why='billing question')
conv('en','billing',[(c,'I returned the blender two weeks ago and still have no refund.')],why='refund goes to billing')
conv('en','technical_support',[(c,'My router keeps dropping the connection every evening.'),(a,'Have you tried restarting it?'),(c,'Yes, twice, it still drops.')],why='technical')
conv('en','orders',[(c,'Where is my parcel? The tracking has not moved since Monday.')],why='order status')
conv('en','accounts',[(c,'I forgot my password and the reset email never arrives.')],why='account')
conv('en','customer_relations',[(c,'Your engineer was rude and left my kitchen in a mess.'),(a,'I am sorry to hear that.'),(c,'I want this on record as a formal complaint.')],why='complaint')
conv('en','general',[(c,'Hello'),(a,'Hi! How can I help?'),(c,'When do you open on Sundays?')],why='other goes to the default queue')
conv('en','vip',[(c,'Can you check my last invoice please?')],tags=['vip'],priority='high',why='vip tag')
conv('en','technical_support',[(c,'The card machine in my shop stopped working and customers are queueing, I need this fixed right now!')],priority='high',why='urgent technical')
conv('en','billing',[(c,'You charged me twice for the same order.'),(a,'I can see two payments.'),(c,'This is unacceptable, I want my money back today.'),(c,'I am absolutely furious, this is the third time you have done this!')],priority='urgent',why='angry billing, escalated')
conv('en','retention',[(c,'How do I stop my subscription from renewing?'),(a,'You can turn it off in settings.'),(c,'I cannot find it, can a person do it for me?')],why='cancellation then a request for a person')
conv('en','orders',[(c,'My order was supposed to arrive yesterday.'),(a,'Let me check.'),(c,'Thanks, it is a birthday present.')],why='order status then thanks')
conv('en','accounts',[(c,'Someone logged into my account from another country, please lock it.')],priority='high',why='urgent account')
conv('en','billing',[(c,'Is there a discount if I pay for the whole year up front?')],why='pricing is billing')
conv('en','technical_support',[(c,'How do I set up call forwarding on my phone?')],why='how-to is technical')
conv('en','retention',[(c,'I am moving abroad and need to end my contract.'),(a,'Sorry to see you go.'),(c,'Do I have to return the router?')],why='cancellation')
conv('en','customer_relations',[(c,'I have been on hold for two hours, this is ridiculous.'),(c,'Nobody ever calls back when they promise to.')],why='complaint')
conv('en','general',[(c,'Hi, are you hiring at the moment?')],why='other')
conv('en','orders',[(c,'Can I change the delivery address for the order I placed this morning?')],why='order change')
conv('en','vip',[(c,'I want to cancel my plan.')],tags=['vip','business'],priority='high',why='vip before cancellation')
conv('en','billing',[(c,'Can I pay my bill with PayPal?')],why='billing')
# Chinese
conv('zh','retention',[(c,'你好'),(a,'您好，请问有什么可以帮您？'),(c,'我想在月底解约宽带。')],why='cancellation after a greeting')
conv('zh','billing',[(c,'为什么我的账单上多了一笔我不知道的费用？'),(a,'我帮您查一下。'),(c,'写的是"服务调整费"，十二块。')],why='billing')
conv('zh','billing',[(c,'搅拌机两周前就退回去了，退款还没到。')],why='refund goes to billing')
conv('zh','technical_support',[(c,'路由器每天晚上都断网。'),(a,'您重启过吗？'),(c,'重启了两次，还是断。')],why='technical')
conv('zh','orders',[(c,'我的包裹到哪了？物流从周一开始就没更新。')],why='order status')
conv('zh','accounts',[(c,'我忘了密码，重置邮件一直收不到。')],why='account')
conv('zh','customer_relations',[(c,'你们的师傅态度很差，还把我厨房弄得一团糟。'),(a,'非常抱歉。'),(c,'我要正式投诉。')],why='complaint')
conv('zh','general',[(c,'你好'),(a,'您好，请问有什么可以帮您？'),(c,'周日你们几点营业？')],why='other')
conv('zh','vip',[(c,'帮我查一下上个月的账单。')],tags=['vip'],priority='high',why='vip tag')
conv('zh','technical_support',[(c,'店里的刷卡机突然不能用了，客人都在排队，马上帮我修好！')],priority='high',why='urgent technical')
conv('zh','billing',[(c,'同一个订单扣了我两次钱。'),(a,'我看到了两笔付款。'),(c,'太离谱了，今天必须把钱退给我。'),(c,'我非常愤怒，这已经是第三次了！')],priority='urgent',why='angry billing, escalated')
conv('zh','retention',[(c,'自动续费在哪里关？'),(a,'可以在设置里关闭。'),(c,'我找不到，能转人工帮我关吗？')],why='cancellation then a request for a person')
conv('zh','orders',[(c,'我的订单昨天就该到了。'),(a,'我帮您查一下。'),(c,'谢谢，这是生日礼物。')],why='order status then thanks')
conv('zh','accounts',[(c,'有人在国外登录了我的账号，请马上冻结。')],priority='high',why='urgent account')
conv('zh','billing',[(c,'一次性付一年有优惠吗？')],why='pricing is billing')
conv('zh','technical_support',[(c,'手机怎么设置呼叫转移？')],why='how-to is technical')
conv('zh','retention',[(c,'我要出国了，需要解约。'),(a,'很遗憾。'),(c,'路由器需要退还吗？')],why='cancellation')
conv('zh','customer_relations',[(c,'排队等了两个小时，太离谱了。'),(c,'答应给我回电话，一直没人打来。')],why='complaint')
conv('zh','general',[(c,'你们公司现在在招聘吗？')],why='other')
conv('zh','orders',[(c,'今天早上下的订单，还能改收货地址吗？')],why='order change')
conv('zh','vip',[(c,'我要取消套餐。')],tags=['vip','business'],priority='high',why='vip before cancellation')
conv('zh','billing',[(c,'可以用支付宝交话费吗？')],why='billing')
out=[]
for lang in ['en','zh']:
    n=0
    for x in C:
        if x['lang']!=lang: continue
        n+=1
        x=dict(id=f'route-{lang}-{n:02d}', split='dev' if n%2==1 else 'heldout', **x)
        if x['priority'] is None: x['priority']='normal'
        out.append(x)
open(__import__('pathlib').Path(__file__).with_name('routing_conversations.jsonl'),'w').write(''.join(json.dumps(x,ensure_ascii=False)+'\n' for x in out))
print(len(out))
